"""The ``dynamodb.put_items`` / ``dynamodb.delete_items`` templates and their attribute-value conversions.

Each is one ``TransactWriteItems``, joined to the unit's transaction (and to the audit entry,
TX_SHARED) when there is one. No boto3 import at module level.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.targets.aws import WriteAction, aws_session, item_ident
from flamingock_provider.templates._dynamodb_base import (
    MAX_ITEMS_PER_STEP,
    DynamoTemplate,
    Problems,
    check_list,
    check_str,
    describe,
    key_names,
    table_keys,
)

# -- attribute values ---------------------------------------------------------------------------


def _decimals(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


def to_item(value: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values → typed attribute values (``{"S": ...}``, ``{"N": ...}``, ...)."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {str(k): serializer.serialize(_decimals(v)) for k, v in value.items()}


def _jsonable(attr: Mapping[str, Any]) -> dict[str, Any]:
    """A typed attribute value as JSON (bytes as base64) for the undo state."""
    ((kind, value),) = attr.items()
    if kind == "B":
        return {"B64": base64.b64encode(value).decode()}
    if kind == "BS":
        return {"BS64": [base64.b64encode(v).decode() for v in value]}
    if kind == "M":
        return {"M": {k: _jsonable(v) for k, v in value.items()}}
    if kind == "L":
        return {"L": [_jsonable(v) for v in value]}
    return {kind: value}


def _typed(attr: Mapping[str, Any]) -> dict[str, Any]:
    ((kind, value),) = attr.items()
    if kind == "B64":
        return {"B": base64.b64decode(value)}
    if kind == "BS64":
        return {"BS": [base64.b64decode(v) for v in value]}
    if kind == "M":
        return {"M": {k: _typed(v) for k, v in value.items()}}
    if kind == "L":
        return {"L": [_typed(v) for v in value]}
    return {kind: value}


def _item_json(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if item is None else {k: _jsonable(v) for k, v in item.items()}


def _item_typed(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _typed(v) for k, v in item.items()}


# -- items ----------------------------------------------------------------------------------------


class _ItemsTemplate(DynamoTemplate):
    transactional = True
    entries_key: ClassVar[str] = "items"

    def check(self, apply: Mapping[str, Any]) -> Problems:
        problems = check_list(apply, self.entries_key, MAX_ITEMS_PER_STEP) + check_str(apply, "file")
        if (self.entries_key in apply) == ("file" in apply):
            problems.append(f"field 'apply': give exactly one of '{self.entries_key}' or 'file' (a JSON list)")
        return problems

    def entries(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        raw = payload.get(self.entries_key)
        if "file" in payload:
            raw = json.loads((Path(ctx.pipeline.path) / payload["file"]).read_text(encoding="utf-8"))
        if not isinstance(raw, list) or not all(isinstance(e, Mapping) for e in raw):
            raise ConfigurationError(f"change {ctx.change.id!r}: {self.entries_key} must be a list of mappings")
        if len(raw) > MAX_ITEMS_PER_STEP:
            raise ConfigurationError(
                f"change {ctx.change.id!r}: {len(raw)} {self.entries_key}, over {MAX_ITEMS_PER_STEP} per step; split them"
            )
        return raw

    def capture(self, client: Any, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        """The items at ``keys`` now (consistent reads), None where there is none."""
        found: dict[str, dict[str, Any]] = {}
        names = list(keys[0]) if keys else []
        for start in range(0, len(keys), 100):
            request = {table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            while request:
                reply = client.batch_get_item(RequestItems=request)
                for item in reply.get("Responses", {}).get(table, []):
                    found[item_ident(table, {n: item[n] for n in names})] = item
                request = reply.get("UnprocessedKeys") or {}
        return [found.get(item_ident(table, key)) for key in keys]

    def keyed(self, names: list[str], items: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
        keys, seen = [], set()
        for item in items:
            missing = [n for n in names if n not in item]
            if missing:
                raise ConfigurationError(f"an entry for table {table!r} lacks its key attribute(s) {missing}: {item}")
            key = {n: item[n] for n in names}
            if item_ident(table, key) in seen:
                raise ConfigurationError(f"key {key} appears twice for table {table!r}; remove the duplicate")
            seen.add(item_ident(table, key))
            keys.append(key)
        return keys

    level = "rewrite"

    def impact(self, ctx: ChangeContext, payload: Mapping[str, Any], *, timeout: float) -> str | None:
        """How many of the keys hold an item now (one consistent batch read)."""
        client, table = self.client(ctx), payload["table"]
        items = [to_item(e) for e in self.entries(ctx, payload)]
        keys = self.keyed(key_names(describe(client, table)), items, table)  # plan time: not cached
        found = sum(1 for item in self.capture(client, table, keys) if item is not None)
        return f"table {table}: {found:,} of {len(keys):,} keys hold an item"

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        if not isinstance(undo_state, Mapping):
            return  # one TransactWriteItems: a failed apply wrote nothing
        table = undo_state["table"]
        actions = [_restore(table, _item_typed(p["key"]), p["item"]) for p in undo_state["previous"]]
        aws_session(ctx, self.name).transact(actions)


def _restore(table: str, key: dict[str, Any], item: Mapping[str, Any] | None) -> WriteAction:
    ident = item_ident(table, key)
    if item is None:
        return WriteAction({"Delete": {"TableName": table, "Key": key}}, ident, f"delete {ident}")
    return WriteAction({"Put": {"TableName": table, "Item": _item_typed(item)}}, ident, f"restore {ident}")


def _undo(table: str, keys: list[dict[str, Any]], previous: list[dict[str, Any] | None]) -> dict[str, Any]:
    pairs = zip(keys, previous, strict=True)
    return {"table": table, "previous": [{"key": _item_json(k), "item": _item_json(p)} for k, p in pairs]}


class PutItems(_ItemsTemplate):
    name = "dynamodb.put_items"
    effect = "puts items, replacing any item already at those keys"
    apply_keys = frozenset({"table", "items", "file"})
    required_apply_keys = frozenset({"table"})

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        session = aws_session(ctx, self.name)
        client, table = session.client("dynamodb"), payload["table"]
        items = [to_item(e) for e in self.entries(ctx, payload)]
        keys = self.keyed(table_keys(ctx, client, table), items, table)
        previous = self.capture(client, table, keys)
        session.transact(
            [
                WriteAction(
                    {"Put": {"TableName": table, "Item": i}}, item_ident(table, k), f"put {item_ident(table, k)}"
                )
                for i, k in zip(items, keys, strict=True)
            ]
        )
        return _undo(table, keys, previous)


class DeleteItems(_ItemsTemplate):
    name = "dynamodb.delete_items"
    effect = "deletes the items at the given keys"
    entries_key = "keys"
    apply_keys = frozenset({"table", "keys", "file"})
    required_apply_keys = frozenset({"table"})

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        session = aws_session(ctx, self.name)
        client, table = session.client("dynamodb"), payload["table"]
        keys = self.keyed(table_keys(ctx, client, table), [to_item(e) for e in self.entries(ctx, payload)], table)
        previous = self.capture(client, table, keys)
        session.transact(
            [
                WriteAction(
                    {"Delete": {"TableName": table, "Key": k}}, item_ident(table, k), f"delete {item_ident(table, k)}"
                )
                for k in keys
            ]
        )
        return _undo(table, keys, previous)
