"""Payload checks and value conversions of the ``mongo.*`` templates.

Checks run at parse time (no I/O). Conversions turn YAML/JSON payloads into BSON and the undo state
into canonical extended JSON and back. No pymongo/bson import at module level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

LEVELS = ("off", "strict", "moderate")
ACTIONS = ("error", "warn")
# snake_case payload keys -> MongoDB option names
OPTION_NAMES = {
    "validation_level": "validationLevel",
    "validation_action": "validationAction",
    "expire_after_seconds": "expireAfterSeconds",
    "partial_filter_expression": "partialFilterExpression",
    "view_on": "viewOn",
}
Problems = list[str]


# -- payload checks (parse time, no I/O) ------------------------------------------------------


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _is_keys(value: Any) -> bool:
    if isinstance(value, Mapping):
        return bool(value) and all(isinstance(k, str) for k in value)
    pairs = isinstance(value, list) and bool(value)
    return pairs and all(_key_pair(item) is not None for item in value)


def _is_update(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(stage, Mapping) for stage in value)
    return isinstance(value, Mapping) and bool(value) and all(str(k).startswith("$") for k in value)


KINDS: dict[str, tuple[str, Any]] = {
    "name": ("a collection name", lambda v: isinstance(v, str) and bool(v) and "$" not in v),
    "text": ("a non-empty string", lambda v: isinstance(v, str) and bool(v)),
    "doc": ("a mapping", lambda v: isinstance(v, Mapping)),
    "docs": (
        "a non-empty list of mappings",
        lambda v: isinstance(v, list) and v and all(isinstance(d, Mapping) for d in v),
    ),
    "list": ("a list", lambda v: isinstance(v, list)),
    "stages": (
        "a list of pipeline stages (mappings)",
        lambda v: isinstance(v, list) and all(isinstance(s, Mapping) for s in v),
    ),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "count": ("a whole number >= 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "keys": ("index keys: {field: 1|-1|'text'|...} or [[field, direction], ...]", _is_keys),
    "update": ("update operators ({$set: ...}) or an update pipeline (a list of stages)", _is_update),
    "level": (f"one of {', '.join(LEVELS)}", lambda v: v in LEVELS),
    "action": (f"one of {', '.join(ACTIONS)}", lambda v: v in ACTIONS),
}


def check_kinds(payload: Mapping[str, Any], fields: Mapping[str, str], where: str) -> Problems:
    problems = []
    for key, value in payload.items():
        kind = fields.get(key)
        if kind is None or _templated(value):
            continue
        expected, check = KINDS[kind]
        if not check(value):
            problems.append(f"field '{where}.{key}': expected {expected}, got {value!r}")
    return problems


def exactly_one(payload: Mapping[str, Any], keys: Sequence[str], where: str) -> Problems:
    if sum(key in payload for key in keys) == 1:
        return []
    return [f"field '{where}': give exactly one of {' or '.join(repr(k) for k in keys)}"]


# -- values: YAML/JSON payloads <-> BSON, undo state <-> canonical extended JSON --------------


def to_bson(value: Any) -> Any:
    """Turn payload values into BSON values: extended JSON (``{$oid: ..}``) and YAML dates included."""
    from bson import json_util

    if isinstance(value, Mapping):
        converted = {str(k): to_bson(v) for k, v in value.items()}
        return json_util.object_hook(converted, json_options())
    if isinstance(value, list):
        return [to_bson(v) for v in value]
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return value


def to_json(value: Any) -> Any:
    """Return ``value`` as canonical extended JSON made of plain JSON types (exact BSON round trip)."""
    import json

    from bson import json_util

    return json.loads(json_util.dumps(value, json_options=json_util.CANONICAL_JSON_OPTIONS))


def from_json(value: Any) -> Any:
    import json

    from bson import json_util

    return json_util.loads(json.dumps(value), json_options=json_options())


def json_options() -> Any:
    from bson import json_util

    return json_util.JSONOptions(tz_aware=True, tzinfo=timezone.utc)


def payload_options(payload: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {OPTION_NAMES.get(k, k): to_bson(payload[k]) for k in keys if k in payload}


def _key_pair(item: Any) -> tuple[str, Any] | None:
    if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[0], item[1]
    if isinstance(item, Mapping) and len(item) == 1:
        [(field, direction)] = item.items()
        return (field, direction) if isinstance(field, str) else None
    return None


def index_keys(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    return [pair for pair in (_key_pair(item) for item in value) if pair is not None]


def index_name(keys: Sequence[tuple[str, Any]]) -> str:
    """MongoDB's default index name: ``field_direction`` joined by ``_``."""
    return "_".join(f"{field}_{direction}" for field, direction in keys)
