"""Safe reads of unit and config documents: bounded file reads, UTF-8, YAML and JSON, typed fields.

Reads raise :class:`DocumentError` with a message saying what to do; :class:`Fields` never raises and
appends every problem as ``field 'x': ...`` so that the loader can report everything in one pass.
"""

from __future__ import annotations

import enum
import json
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from flamingock_provider.core.suggest import did_you_mean

MAX_DOCUMENT_BYTES = 1 << 20  # unit, pipeline.yaml and stage.yaml files
MAX_PAYLOAD_BYTES = 16 << 20  # files referenced with `file:` (seed data, long SQL scripts)
MAX_ALIAS_NODES = 10_000  # YAML nodes reached again through aliases: stops "billion laughs" files

_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
E = TypeVar("E", bound=enum.Enum)


class DocumentError(Exception):
    """A file cannot be read as a document; the message says why and what to do."""


def read_bytes(path: Path, limit: int) -> bytes:
    """Read a regular file of at most ``limit`` bytes, checking the size before reading."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise DocumentError("not a regular file; remove it or replace it with a file")
        if info.st_size > limit:
            raise DocumentError(_too_big(info.st_size, limit))
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as err:
        raise DocumentError(f"cannot read the file: {err.strerror or err}") from err
    if len(raw) > limit:
        raise DocumentError(_too_big(len(raw), limit))
    return raw


def _too_big(size: int, limit: int) -> str:
    return f"file is {size:,} bytes, over the {limit:,}-byte limit; split it or move data elsewhere"


def decode_utf8(raw: bytes) -> str:
    """Decode UTF-8 (a leading BOM is dropped) or explain where the file is not UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DocumentError(f"not UTF-8: byte 0x{raw[err.start]:02x} at line {line}; save the file as UTF-8") from err
    return text.removeprefix("\ufeff")


def read_document(path: Path) -> tuple[bytes, Any]:
    """Return the raw bytes and the parsed content of a YAML or JSON file."""
    raw = read_bytes(path, MAX_DOCUMENT_BYTES)
    text = decode_utf8(raw)
    return raw, load_json(text) if path.suffix == ".json" else load_yaml(text)


def load_yaml(text: str) -> Any:
    """Parse one YAML document safely: plain types only, bounded alias expansion, no duplicate keys."""
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node) if "&" in text else _check_tree(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        kind = "unsupported YAML" if isinstance(err, yaml.constructor.ConstructorError) else "YAML syntax error"
        raise DocumentError(f"{kind}{where}: {err.problem or err.context}") from err
    except (yaml.YAMLError, RecursionError) as err:
        raise DocumentError(f"invalid YAML: {err}") from err
    finally:
        loader.dispose()


def _check_nodes(root: yaml.Node) -> None:
    """Walk the node graph iteratively, expanding aliases only up to :data:`MAX_ALIAS_NODES`."""
    seen: set[int] = set()
    repeats = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            repeats += 1
            if repeats > MAX_ALIAS_NODES:
                raise DocumentError(
                    f"YAML aliases expand to more than {MAX_ALIAS_NODES:,} nodes (an alias bomb or a "
                    "recursive anchor); write the values out instead of using '&anchor'/'*alias'"
                )
        else:
            seen.add(id(node))
            _check_duplicate_keys(node)
        stack.extend(_children(node))


def _check_tree(root: yaml.Node) -> None:
    """:func:`_check_nodes` for a document without anchors (no ``&``): a tree, so no alias to count."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node)
            stack += [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_duplicate_keys(node: yaml.Node) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    keys: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        if (key.tag, key.value) in keys:
            raise DocumentError(f"duplicate key {key.value!r} at line {key.start_mark.line + 1}; keep one")
        keys.add((key.tag, key.value))


def load_json(text: str) -> Any:
    """Parse JSON, rejecting duplicate keys."""
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as err:
        raise DocumentError(f"JSON syntax error at line {err.lineno}, column {err.colno}: {err.msg}") from err
    except RecursionError as err:
        raise DocumentError("JSON is nested too deeply") from err


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DocumentError(f"duplicate key {key!r}; keep one")
        out[key] = value
    return out


def describe(value: Any) -> str:
    """Return a short ``type value`` description for messages."""
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 60 else shown[:57] + '...'}"


class Fields:
    """Typed reads of one mapping; every problem is appended to ``errors`` as ``field 'x': ...``."""

    def __init__(
        self,
        data: Mapping[Any, Any],
        errors: list[str],
        *,
        prefix: str = "",
        upper: bool = False,
        reported: Iterable[str] = (),
    ):
        self.data = data
        self.errors = errors
        self.prefix = prefix
        self.upper = upper
        self.reported = frozenset(reported)  # keys whose problem is already in errors

    def label(self, key: str) -> str:
        return self.prefix + (key.upper() if self.upper else key)

    def error(self, key: str, problem: str) -> None:
        if key in self.reported:
            return
        self.errors.append(f"field {self.label(key)!r}: {problem}")

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        for key in self.data:
            if key not in allowed:
                self.error(str(key), f"unknown key{did_you_mean(str(key), allowed)}")

    def text(self, key: str, *, required: bool = False, pattern: str = "", rule: str = "") -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(key, "required")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            self.error(key, f"must be a non-empty string, got {describe(value)}")
            return None
        if pattern and not re.fullmatch(pattern, value):
            self.error(key, f"invalid value {value!r}: {rule}")
            return None
        return value

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            self.error(key, f"must be true or false, got {describe(value)}")
            return None
        return value

    def choice(self, key: str, kind: type[E]) -> E | None:
        value = self.data.get(key)
        if value is None:
            return None
        options = [str(member.value) for member in kind]
        if not isinstance(value, str) or value not in options:
            self.error(key, f"unknown value {value!r}{did_you_mean(str(value), options)}")
            return None
        return kind(value)

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            self.error(key, f"must be a positive number of seconds, got {describe(value)}")
            return None
        return value

    def mapping(self, key: str, *, required: bool = False) -> dict[Any, Any] | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(key, "required")
            return None
        if not isinstance(value, Mapping):
            self.error(key, f"must be a mapping (key: value), got {describe(value)}")
            return None
        return dict(value)
