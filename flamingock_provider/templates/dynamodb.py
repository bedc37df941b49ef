"""The ``dynamodb.*`` templates: tables, items and TTL on an ``aws`` target.

Items are written as plain YAML/JSON values (numbers become DynamoDB numbers, mappings maps). Every
operation records what it replaces in its undo state, so its derived rollback restores it:

==============  ===========================================  ======================================
operation       apply                                        derived rollback
==============  ===========================================  ======================================
create_table    CreateTable, wait until ACTIVE                delete the table
delete_table    capture the schema, TTL and tags; delete      re-create it empty with that schema
update_table    billing/throughput, create or delete an index restore billing, drop / re-create index
put_items       capture the items at those keys; put (TX)     delete new keys, put old items back
delete_items    capture the items; delete (TX)                put the deleted items back
update_ttl      capture the TTL setting; change it            restore the previous setting
==============  ===========================================  ======================================

``put_items`` and ``delete_items`` are one ``TransactWriteItems`` each, joined to the unit's
transaction (and to the audit entry, TX_SHARED) when there is one. No boto3 import at module level.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.core.template import Template
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.targets.aws import (
    WriteAction,
    aws_session,
    item_ident,
    table_status,
    wait_until_active,
)

MAX_ITEMS_PER_STEP = 90  # a transaction holds 100 writes; leave room for audit entries and the marker
KEY_TYPES = frozenset({"S", "N", "B"})
BILLING_MODES = frozenset({"PAY_PER_REQUEST", "PROVISIONED"})
Problems = list[str]


# -- payload checks (parse time, no I/O) ------------------------------------------------------


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _check_str(payload: Mapping[str, Any], key: str, where: str = "apply") -> Problems:
    value = payload.get(key)
    if key not in payload or (isinstance(value, str) and value):
        return []
    return [f"field '{where}.{key}': expected a non-empty string, got {value!r}"]


def _check_key(payload: Mapping[str, Any], key: str, where: str) -> Problems:
    spec = payload.get(key)
    if key not in payload or _templated(spec):
        return []
    if not isinstance(spec, Mapping) or set(spec) != {"name", "type"} or spec["type"] not in KEY_TYPES:
        return [f"field '{where}.{key}': expected {{name: <attribute>, type: S|N|B}}, got {spec!r}"]
    return []


def _check_index(index: Any, where: str) -> Problems:
    if not isinstance(index, Mapping):
        return [f"field '{where}': expected an index mapping, got {index!r}"]
    allowed = ("name", "partition_key", "sort_key", "projection", "read_capacity", "write_capacity")
    problems = [f"field '{where}.{k}': unknown key{did_you_mean(str(k), allowed)}" for k in index if k not in allowed]
    problems += _check_str(index, "name", where) + _check_key(index, "partition_key", where)
    problems += _check_key(index, "sort_key", where)
    if "name" not in index or "partition_key" not in index:
        problems.append(f"field '{where}': an index needs 'name' and 'partition_key'")
    return problems


def _check_choice(payload: Mapping[str, Any], key: str, choices: frozenset[str]) -> Problems:
    value = payload.get(key)
    if key not in payload or _templated(value) or value in choices:
        return []
    return [f"field 'apply.{key}': {value!r} is not one of {', '.join(sorted(choices))}"]


def _check_list(payload: Mapping[str, Any], key: str, limit: int) -> Problems:
    value = payload.get(key)
    if key not in payload or _templated(value):
        return []
    if not isinstance(value, list) or not value or not all(isinstance(v, Mapping) for v in value):
        return [f"field 'apply.{key}': expected a non-empty list of mappings, got {type(value).__name__}"]
    if len(value) > limit:
        return [f"field 'apply.{key}': {len(value)} entries, over {limit} per step; split them into steps or units"]
    return []


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


# -- target access ------------------------------------------------------------------------------


def _describe(client: Any, table: str) -> Mapping[str, Any]:
    described = table_status(client, table)
    if described is None:
        raise ConfigurationError(f"DynamoDB table {table!r} does not exist; create it first (dynamodb.create_table)")
    return described


def _key_names(described: Mapping[str, Any]) -> list[str]:
    return [k["AttributeName"] for k in described["KeySchema"]]


def _wait_gone(client: Any, table: str) -> None:
    import time

    deadline = time.monotonic() + 300
    while table_status(client, table) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"DynamoDB table {table!r} still exists 300s after DeleteTable")
        time.sleep(0.2)


# -- schema ---------------------------------------------------------------------------------------


def _key_schema(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    schema = [{"AttributeName": spec["partition_key"]["name"], "KeyType": "HASH"}]
    if spec.get("sort_key"):
        schema.append({"AttributeName": spec["sort_key"]["name"], "KeyType": "RANGE"})
    return schema


def _key_attrs(spec: Mapping[str, Any]) -> dict[str, str]:
    return {spec[k]["name"]: spec[k]["type"] for k in ("partition_key", "sort_key") if spec.get(k)}


def _projection(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {"ProjectionType": "INCLUDE", "NonKeyAttributes": [str(v) for v in value]}
    return {"ProjectionType": str(value or "ALL")}


def _throughput(spec: Mapping[str, Any], fallback: Mapping[str, Any]) -> dict[str, int]:
    read = spec.get("read_capacity", fallback.get("read_capacity", 1))
    write = spec.get("write_capacity", fallback.get("write_capacity", 1))
    return {"ReadCapacityUnits": int(read), "WriteCapacityUnits": int(write)}


def _index_request(index: Mapping[str, Any], table: Mapping[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {
        "IndexName": index["name"],
        "KeySchema": _key_schema(index),
        "Projection": _projection(index.get("projection")),
    }
    if table.get("billing_mode") == "PROVISIONED":
        request["ProvisionedThroughput"] = _throughput(index, table)
    return request


def _create_request(table: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    indexes = list(spec.get("indexes") or [])
    attrs = _key_attrs(spec)
    for index in indexes:
        attrs.update(_key_attrs(index))
    request: dict[str, Any] = {
        "TableName": table,
        "KeySchema": _key_schema(spec),
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in attrs.items()],
        "BillingMode": spec.get("billing_mode", "PAY_PER_REQUEST"),
    }
    if request["BillingMode"] == "PROVISIONED":
        request["ProvisionedThroughput"] = _throughput(spec, {})
    if indexes:
        request["GlobalSecondaryIndexes"] = [_index_request(i, spec) for i in indexes]
    if spec.get("local_secondary_indexes"):
        request["LocalSecondaryIndexes"] = list(spec["local_secondary_indexes"])
    if spec.get("tags"):
        request["Tags"] = [{"Key": str(k), "Value": str(v)} for k, v in spec["tags"].items()]
    return request


def _billing(described: Mapping[str, Any]) -> dict[str, Any]:
    throughput = described.get("ProvisionedThroughput") or {}
    mode = (described.get("BillingModeSummary") or {}).get("BillingMode")
    mode = mode or ("PROVISIONED" if throughput.get("ReadCapacityUnits") else "PAY_PER_REQUEST")
    if mode != "PROVISIONED":
        return {"billing_mode": mode}
    return {
        "billing_mode": mode,
        "read_capacity": throughput["ReadCapacityUnits"],
        "write_capacity": throughput["WriteCapacityUnits"],
    }


def _key_spec(schema: Sequence[Mapping[str, str]], types: Mapping[str, str], kind: str) -> dict[str, str] | None:
    name = next((k["AttributeName"] for k in schema if k["KeyType"] == kind), None)
    return None if name is None else {"name": name, "type": types[name]}


def _index_spec(index: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    projection = index.get("Projection") or {}
    spec: dict[str, Any] = {
        "name": index["IndexName"],
        "partition_key": _key_spec(index["KeySchema"], types, "HASH"),
        "projection": projection.get("NonKeyAttributes") or projection.get("ProjectionType", "ALL"),
    }
    sort_key = _key_spec(index["KeySchema"], types, "RANGE")
    if sort_key:
        spec["sort_key"] = sort_key
    throughput = index.get("ProvisionedThroughput") or {}
    if throughput.get("ReadCapacityUnits"):
        spec.update(read_capacity=throughput["ReadCapacityUnits"], write_capacity=throughput["WriteCapacityUnits"])
    return spec


def schema_of(described: Mapping[str, Any]) -> dict[str, Any]:
    """DescribeTable's answer → the create_table payload (without ``table``) that re-creates it."""
    types = {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]}
    spec: dict[str, Any] = {"partition_key": _key_spec(described["KeySchema"], types, "HASH"), **_billing(described)}
    sort_key = _key_spec(described["KeySchema"], types, "RANGE")
    if sort_key:
        spec["sort_key"] = sort_key
    if described.get("GlobalSecondaryIndexes"):
        spec["indexes"] = [_index_spec(i, types) for i in described["GlobalSecondaryIndexes"]]
    if described.get("LocalSecondaryIndexes"):
        keep = ("IndexName", "KeySchema", "Projection")
        spec["local_secondary_indexes"] = [{k: i[k] for k in keep} for i in described["LocalSecondaryIndexes"]]
    return spec


# -- templates --------------------------------------------------------------------------------


class DynamoTemplate(Template):
    """Common parts: an aws target, a ``table``, rollbacks derived from the undo state."""

    target_kind = "aws"
    op: ClassVar[str] = ""

    def validate(self, apply: Mapping[str, Any], rollback: Mapping[str, Any] | None) -> list[str]:
        problems = super().validate(apply, rollback) + _check_str(apply, "table")
        if rollback is not None:
            problems.append(f"field 'rollback': {self.name!r} derives its rollback from what apply replaced; remove it")
        return problems + self.check(apply)

    def check(self, apply: Mapping[str, Any]) -> Problems:
        return []

    def derives_rollback(self, apply: Mapping[str, Any]) -> bool:
        return True

    def client(self, ctx: ChangeContext) -> Any:
        return aws_session(ctx, self.name).client("dynamodb")


class CreateTable(DynamoTemplate):
    name = "dynamodb.create_table"
    apply_keys = frozenset(
        {"table", "partition_key", "sort_key", "indexes", "billing_mode", "read_capacity", "write_capacity", "tags"}
    )
    required_apply_keys = frozenset({"table", "partition_key"})

    def check(self, apply: Mapping[str, Any]) -> Problems:
        problems = _check_key(apply, "partition_key", "apply") + _check_key(apply, "sort_key", "apply")
        problems += _check_choice(apply, "billing_mode", BILLING_MODES)
        indexes = apply.get("indexes", [])
        if not isinstance(indexes, list):
            return [*problems, f"field 'apply.indexes': expected a list, got {indexes!r}"]
        for n, index in enumerate(indexes):
            problems += _check_index(index, f"apply.indexes[{n}]")
        return problems

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client = self.client(ctx)
        request = _create_request(payload["table"], payload)
        client.create_table(**request)
        wait_until_active(client, payload["table"])
        return {"table": payload["table"]}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        client = self.client(ctx)
        if not isinstance(undo_state, Mapping):  # the apply did not create it (e.g. it existed): keep it
            ctx.log.warning("change %s: no table recorded as created; nothing to drop", ctx.change.id)
            return
        if table_status(client, payload["table"]) is None:
            return  # already gone
        client.delete_table(TableName=payload["table"])
        _wait_gone(client, payload["table"])


class DeleteTable(DynamoTemplate):
    name = "dynamodb.delete_table"
    apply_keys = frozenset({"table"})
    required_apply_keys = frozenset({"table"})

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client = self.client(ctx)
        table = payload["table"]
        described = _describe(client, table)
        schema = schema_of(described)
        ttl = client.describe_time_to_live(TableName=table).get("TimeToLiveDescription") or {}
        tags = client.list_tags_of_resource(ResourceArn=described["TableArn"]).get("Tags") or []
        if tags:
            schema["tags"] = {t["Key"]: t["Value"] for t in tags}
        client.delete_table(TableName=table)
        _wait_gone(client, table)
        return {"table": table, "schema": schema, "ttl": _ttl_state(ttl)}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        client = self.client(ctx)
        table = payload["table"]
        if table_status(client, table) is not None:
            return  # the delete never happened
        if not isinstance(undo_state, Mapping) or "schema" not in undo_state:
            raise ConfigurationError(
                f"change {ctx.change.id!r}: table {table!r} is gone and its schema was not captured; re-create it by "
                f"hand, then `flamingock fix` the change"
            )
        client.create_table(**_create_request(table, undo_state["schema"]))
        wait_until_active(client, table)
        _set_ttl(client, table, undo_state.get("ttl"))


class UpdateTable(DynamoTemplate):
    name = "dynamodb.update_table"
    apply_keys = frozenset({"table", "billing_mode", "read_capacity", "write_capacity", "create_index", "delete_index"})
    required_apply_keys = frozenset({"table"})

    def check(self, apply: Mapping[str, Any]) -> Problems:
        problems = _check_choice(apply, "billing_mode", BILLING_MODES) + _check_str(apply, "delete_index")
        if "create_index" in apply:
            problems += _check_index(apply["create_index"], "apply.create_index")
        if not set(apply) - {"table"}:
            problems.append("field 'apply': nothing to change; give billing_mode, create_index or delete_index")
        return problems

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client = self.client(ctx)
        table = payload["table"]
        described = _describe(client, table)
        before = schema_of(described)
        deleted = next((i for i in before.get("indexes", []) if i["name"] == payload.get("delete_index")), None)
        if "delete_index" in payload and deleted is None:
            raise ConfigurationError(f"DynamoDB table {table!r} has no index {payload['delete_index']!r}")
        billing = {k: payload[k] for k in ("billing_mode", "read_capacity", "write_capacity") if k in payload}
        undo: dict[str, Any] = {"table": table, "billing": _billing(described) if billing else None}
        if billing:
            _update_billing(client, table, {**before, **billing}, before)
        if deleted is not None:
            _update_index(client, table, {"Delete": {"IndexName": deleted["name"]}})
            undo["deleted_index"] = deleted
        if "create_index" in payload:
            _create_index(client, table, payload["create_index"], {**before, **billing})
            undo["created_index"] = payload["create_index"]["name"]
        return undo

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        if not isinstance(undo_state, Mapping):
            return  # nothing was recorded as changed
        client = self.client(ctx)
        table = payload["table"]
        schema = schema_of(_describe(client, table))
        names = {i["name"] for i in schema.get("indexes", [])}
        if undo_state.get("created_index") in names:
            _update_index(client, table, {"Delete": {"IndexName": undo_state["created_index"]}})
        deleted = undo_state.get("deleted_index")
        if deleted and deleted["name"] not in names:
            _create_index(client, table, deleted, schema)
        if undo_state.get("billing"):
            _update_billing(client, table, {**schema, **undo_state["billing"]}, schema)


def _update_billing(client: Any, table: str, wanted: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    request: dict[str, Any] = {"TableName": table, "BillingMode": wanted["billing_mode"]}
    if wanted["billing_mode"] == "PROVISIONED":
        request["ProvisionedThroughput"] = _throughput(wanted, {})
        updates = [
            {"Update": {"IndexName": i["name"], "ProvisionedThroughput": _throughput(i, wanted)}}
            for i in current.get("indexes", [])
        ]
        if updates:
            request["GlobalSecondaryIndexUpdates"] = updates
    client.update_table(**request)
    wait_until_active(client, table)


def _create_index(client: Any, table: str, index: Mapping[str, Any], table_spec: Mapping[str, Any]) -> None:
    # Send every attribute definition, not only the new index's: moto replaces the table's list.
    known = {a["AttributeName"]: a["AttributeType"] for a in _describe(client, table)["AttributeDefinitions"]}
    known.update(_key_attrs(index))
    client.update_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in known.items()],
        GlobalSecondaryIndexUpdates=[{"Create": _index_request(index, table_spec)}],
    )
    wait_until_active(client, table)


def _update_index(client: Any, table: str, update: Mapping[str, Any]) -> None:
    client.update_table(TableName=table, GlobalSecondaryIndexUpdates=[dict(update)])
    wait_until_active(client, table)


# -- items ----------------------------------------------------------------------------------------


class _ItemsTemplate(DynamoTemplate):
    transactional = True
    entries_key: ClassVar[str] = "items"

    def check(self, apply: Mapping[str, Any]) -> Problems:
        problems = _check_list(apply, self.entries_key, MAX_ITEMS_PER_STEP) + _check_str(apply, "file")
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

    def keyed(self, described: Mapping[str, Any], items: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
        names = _key_names(described)
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
    apply_keys = frozenset({"table", "items", "file"})
    required_apply_keys = frozenset({"table"})

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        session = aws_session(ctx, self.name)
        client, table = session.client("dynamodb"), payload["table"]
        items = [to_item(e) for e in self.entries(ctx, payload)]
        keys = self.keyed(_describe(client, table), items, table)
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
    entries_key = "keys"
    apply_keys = frozenset({"table", "keys", "file"})
    required_apply_keys = frozenset({"table"})

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        session = aws_session(ctx, self.name)
        client, table = session.client("dynamodb"), payload["table"]
        keys = self.keyed(_describe(client, table), [to_item(e) for e in self.entries(ctx, payload)], table)
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


# -- TTL ------------------------------------------------------------------------------------------


def _ttl_state(description: Mapping[str, Any]) -> dict[str, Any]:
    enabled = description.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
    return {"enabled": enabled, "attribute": description.get("AttributeName")}


def _set_ttl(client: Any, table: str, wanted: Mapping[str, Any] | None) -> None:
    """Bring the table's TTL to ``wanted`` ({enabled, attribute}); a change of attribute disables first."""
    if not wanted:
        return
    now = _ttl_state(client.describe_time_to_live(TableName=table).get("TimeToLiveDescription") or {})
    if now == dict(wanted) or (not now["enabled"] and not wanted["enabled"]):
        return
    if now["enabled"]:
        spec = {"Enabled": False, "AttributeName": now["attribute"]}
        client.update_time_to_live(TableName=table, TimeToLiveSpecification=spec)
    if wanted["enabled"]:
        spec = {"Enabled": True, "AttributeName": wanted["attribute"]}
        client.update_time_to_live(TableName=table, TimeToLiveSpecification=spec)


class UpdateTtl(DynamoTemplate):
    name = "dynamodb.update_ttl"
    apply_keys = frozenset({"table", "attribute", "enabled"})
    required_apply_keys = frozenset({"table", "attribute"})

    def check(self, apply: Mapping[str, Any]) -> Problems:
        enabled = apply.get("enabled", True)
        bad = [] if isinstance(enabled, bool) or _templated(enabled) else ["field 'apply.enabled': expected true/false"]
        return _check_str(apply, "attribute") + bad

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client, table = self.client(ctx), payload["table"]
        _describe(client, table)
        before = _ttl_state(client.describe_time_to_live(TableName=table).get("TimeToLiveDescription") or {})
        wanted = {"enabled": _truthy(payload.get("enabled", True)), "attribute": payload["attribute"]}
        _set_ttl(client, table, wanted)
        return {"table": table, "ttl": before}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        if isinstance(undo_state, Mapping):
            _set_ttl(self.client(ctx), payload["table"], undo_state["ttl"])


def _truthy(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes", "on")


TEMPLATES: dict[str, Template] = {
    "create_table": CreateTable(),
    "delete_table": DeleteTable(),
    "update_table": UpdateTable(),
    "put_items": PutItems(),
    "delete_items": DeleteItems(),
    "update_ttl": UpdateTtl(),
}
