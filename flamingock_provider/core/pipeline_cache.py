"""Parsed pipelines cached in memory and in a local JSON file, keyed by the folder's fingerprint.

Airflow imports a DAG file again in every task's worker process and in each reschedule poke, and
the DAG processor parses in a fresh child process: an in-memory cache alone would help neither.
The JSON file cache holds the parsed :class:`Pipeline` under ``$FLAMINGOCK_HOME/parse-cache`` (or
``$FLAMINGOCK_PARSE_CACHE``; ``off`` disables it). It is plain data, never code: a pipeline whose
payloads JSON cannot carry exactly (dates, non-string keys) is simply not cached. The fingerprint
(path, size and mtime of every file the loader reads) decides whether an entry is still valid.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import os
import tempfile
import threading
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from flamingock_provider.core import model
from flamingock_provider.core.loader import load_pipeline, pipeline_fingerprint
from flamingock_provider.core.model import Pipeline

log = logging.getLogger("flamingock")

_MEMORY: dict[str, tuple[str, Pipeline]] = {}
_GUARD = threading.Lock()
_MODEL_TYPES: tuple[type, ...] = (
    *(model.Pipeline, model.Stage, model.ChangeUnit, model.Step, model.CheckSpec),
    *(model.TargetConfig, model.AuditConfig, model.LockConfig, model.FleetConfig, model.Member),
    model.ApprovalConfig,
)


def cached_pipeline(pipeline_dir: str | os.PathLike[str]) -> Pipeline:
    """Load a pipeline folder, reusing the last parse while no file in it changed."""
    key = os.path.abspath(pipeline_dir)
    fingerprint = pipeline_fingerprint(key)
    with _GUARD:
        hit = _MEMORY.get(key)
    if hit is not None and hit[0] == fingerprint:
        return hit[1]
    pipeline = _read_file(key, fingerprint)
    if pipeline is None:
        pipeline = load_pipeline(key, fingerprint=fingerprint)
        _write_file(key, fingerprint, pipeline)
    with _GUARD:
        _MEMORY[key] = (fingerprint, pipeline)
    return pipeline


def cache_folder() -> Path | None:
    setting = os.environ.get("FLAMINGOCK_PARSE_CACHE")
    if setting is not None:
        return None if setting.strip().lower() in ("", "0", "off", "false", "no") else Path(setting)
    from flamingock_provider.core.paths import flamingock_home

    return flamingock_home() / "parse-cache"


def _cache_file(key: str) -> Path | None:
    folder = cache_folder()
    return None if folder is None else folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _read_file(key: str, fingerprint: str) -> Pipeline | None:
    path = _cache_file(key)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA or data.get("fingerprint") != fingerprint or data.get("path") != key:
            return None
        return typing.cast(Pipeline, _decode(Pipeline, data["pipeline"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # missing, stale or unreadable: parse the folder


def _write_file(key: str, fingerprint: str, pipeline: Pipeline) -> None:
    path = _cache_file(key)
    if path is None:
        return
    try:
        encoded = _encode(pipeline)
        if _decode(Pipeline, json.loads(json.dumps(encoded))) != pipeline:
            return  # JSON would change a payload (a date, a non-string key): don't cache this one
        document = {"schema": SCHEMA, "fingerprint": fingerprint, "path": key, "pipeline": encoded}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8", suffix=".tmp") as out:
            json.dump(document, out, separators=(",", ":"))
        os.replace(out.name, path)  # atomic: a concurrent reader sees the old file or the new one
    except (OSError, TypeError, ValueError) as err:
        log.debug("parse cache not written for %s: %s", key, err)


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _encode(item) for key, item in value.items()}
    return value


def _decode(kind: Any, value: Any) -> Any:
    return _decoder(kind)(value)


def _identity(value: Any) -> Any:
    return value


@cache
def _decoder(kind: Any) -> Callable[[Any], Any]:
    """Return a function that rebuilds a value of type ``kind`` from its JSON form (built once per type)."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        inner = _decoder(options[0]) if len(options) == 1 else _identity
        return lambda value: None if value is None else inner(value)
    if origin is tuple:
        item = _decoder(args[0])
        return lambda value: tuple(map(item, value))
    if origin in (Mapping, dict):
        item = _decoder(args[1])
        return lambda value: {key: item(v) for key, v in value.items()}
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return _dataclass_decoder(kind)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind
    if kind is Path:
        return Path
    if kind is datetime:
        return datetime.fromisoformat
    return _identity


def _dataclass_decoder(kind: type) -> Callable[[Any], Any]:
    hints = _HINTS[kind]
    parts = [(f.name, _decoder(hints[f.name])) for f in dataclasses.fields(kind)]
    return lambda value: kind(**{name: decode(value[name]) for name, decode in parts})


_HINTS: dict[type, dict[str, Any]] = {cls: typing.get_type_hints(cls) for cls in _MODEL_TYPES}
# Any change to the model's fields invalidates every cached file.
SCHEMA = hashlib.sha256(
    repr(sorted((c.__name__, sorted(map(str, h.items()))) for c, h in _HINTS.items())).encode()
).hexdigest()[:16]
