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

This module holds the table and TTL operations and ``TEMPLATES``; the payload checks and the base
class are in ``_dynamodb_base``, schema and TTL helpers in ``_dynamodb_schema``, the item operations
in ``_dynamodb_items``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.core.template import Template
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.targets.aws import table_status, wait_until_active
from flamingock_provider.templates._dynamodb_base import (
    BILLING_MODES,
    DynamoTemplate,
    Problems,
    check_choice,
    check_index,
    check_key,
    check_str,
    count_items,
    describe,
    forget_table,
    templated,
)
from flamingock_provider.templates._dynamodb_items import DeleteItems, PutItems
from flamingock_provider.templates._dynamodb_schema import (
    billing_of,
    create_index,
    create_request,
    schema_of,
    set_ttl,
    ttl_state,
    update_billing,
    update_index,
    wait_gone,
)

# -- tables ---------------------------------------------------------------------------------------


class CreateTable(DynamoTemplate):
    name = "dynamodb.create_table"
    effect = "creates the table"
    apply_keys = frozenset(
        {"table", "partition_key", "sort_key", "indexes", "billing_mode", "read_capacity", "write_capacity", "tags"}
    )
    required_apply_keys = frozenset({"table", "partition_key"})

    def check(self, apply: Mapping[str, Any]) -> Problems:
        problems = check_key(apply, "partition_key", "apply") + check_key(apply, "sort_key", "apply")
        problems += check_choice(apply, "billing_mode", BILLING_MODES)
        indexes = apply.get("indexes", [])
        if not isinstance(indexes, list):
            return [*problems, f"field 'apply.indexes': expected a list, got {indexes!r}"]
        for n, index in enumerate(indexes):
            problems += check_index(index, f"apply.indexes[{n}]")
        return problems

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client = self.client(ctx)
        forget_table(payload["table"])
        request = create_request(payload["table"], payload)
        client.create_table(**request)
        wait_until_active(client, payload["table"])
        return {"table": payload["table"]}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        client = self.client(ctx)
        forget_table(payload["table"])
        if not isinstance(undo_state, Mapping):  # the apply did not create it (e.g. it existed): keep it
            ctx.log.warning("change %s: no table recorded as created; nothing to drop", ctx.change.id)
            return
        if table_status(client, payload["table"]) is None:
            return  # already gone
        client.delete_table(TableName=payload["table"])
        wait_gone(client, payload["table"])


class DeleteTable(DynamoTemplate):
    name = "dynamodb.delete_table"
    level = "destructive"
    effect = "deletes the table and every item in it (the rollback re-creates it empty)"

    def impact(self, ctx: ChangeContext, payload: Mapping[str, Any], *, timeout: float) -> str | None:
        table = payload["table"]
        client = self.client(ctx)
        if table_status(client, table) is None:
            return f"table {table}: does not exist"
        return f"table {table}: {count_items(client, table, timeout)}"

    apply_keys = frozenset({"table"})
    required_apply_keys = frozenset({"table"})

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client = self.client(ctx)
        table = payload["table"]
        forget_table(table)
        described = describe(client, table)
        schema = schema_of(described)
        ttl = client.describe_time_to_live(TableName=table).get("TimeToLiveDescription") or {}
        tags = client.list_tags_of_resource(ResourceArn=described["TableArn"]).get("Tags") or []
        if tags:
            schema["tags"] = {t["Key"]: t["Value"] for t in tags}
        client.delete_table(TableName=table)
        wait_gone(client, table)
        return {"table": table, "schema": schema, "ttl": ttl_state(ttl)}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        client = self.client(ctx)
        table = payload["table"]
        forget_table(table)
        if table_status(client, table) is not None:
            return  # the delete never happened
        if not isinstance(undo_state, Mapping) or "schema" not in undo_state:
            raise ConfigurationError(
                f"change {ctx.change.id!r}: table {table!r} is gone and its schema was not captured; re-create it by "
                f"hand, then `flamingock fix` the change"
            )
        client.create_table(**create_request(table, undo_state["schema"]))
        wait_until_active(client, table)
        set_ttl(client, table, undo_state.get("ttl"))


class UpdateTable(DynamoTemplate):
    name = "dynamodb.update_table"
    apply_keys = frozenset({"table", "billing_mode", "read_capacity", "write_capacity", "create_index", "delete_index"})
    required_apply_keys = frozenset({"table"})

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> list[tuple[str, str]]:
        table, out = apply.get("table"), []
        if "delete_index" in apply:
            out.append(("destructive", f"{self.name} {table}: deletes index {apply['delete_index']}"))
        if "create_index" in apply:
            out.append(("safe", f"{self.name} {table}: creates an index (backfilled online)"))
        if any(k in apply for k in ("billing_mode", "read_capacity", "write_capacity")):
            out.append(("safe", f"{self.name} {table}: changes billing or capacity"))
        return out

    def check(self, apply: Mapping[str, Any]) -> Problems:
        problems = check_choice(apply, "billing_mode", BILLING_MODES) + check_str(apply, "delete_index")
        if "create_index" in apply:
            problems += check_index(apply["create_index"], "apply.create_index")
        if not set(apply) - {"table"}:
            problems.append("field 'apply': nothing to change; give billing_mode, create_index or delete_index")
        return problems

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client = self.client(ctx)
        table = payload["table"]
        described = describe(client, table)
        before = schema_of(described)
        deleted = next((i for i in before.get("indexes", []) if i["name"] == payload.get("delete_index")), None)
        if "delete_index" in payload and deleted is None:
            raise ConfigurationError(f"DynamoDB table {table!r} has no index {payload['delete_index']!r}")
        billing = {k: payload[k] for k in ("billing_mode", "read_capacity", "write_capacity") if k in payload}
        undo: dict[str, Any] = {"table": table, "billing": billing_of(described) if billing else None}
        if billing:
            update_billing(client, table, {**before, **billing}, before)
        if deleted is not None:
            update_index(client, table, {"Delete": {"IndexName": deleted["name"]}})
            undo["deleted_index"] = deleted
        if "create_index" in payload:
            create_index(client, table, payload["create_index"], {**before, **billing})
            undo["created_index"] = payload["create_index"]["name"]
        return undo

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        if not isinstance(undo_state, Mapping):
            return  # nothing was recorded as changed
        client = self.client(ctx)
        table = payload["table"]
        schema = schema_of(describe(client, table))
        names = {i["name"] for i in schema.get("indexes", [])}
        if undo_state.get("created_index") in names:
            update_index(client, table, {"Delete": {"IndexName": undo_state["created_index"]}})
        deleted = undo_state.get("deleted_index")
        if deleted and deleted["name"] not in names:
            create_index(client, table, deleted, schema)
        if undo_state.get("billing"):
            update_billing(client, table, {**schema, **undo_state["billing"]}, schema)


# -- TTL ------------------------------------------------------------------------------------------


class UpdateTtl(DynamoTemplate):
    name = "dynamodb.update_ttl"
    apply_keys = frozenset({"table", "attribute", "enabled"})
    required_apply_keys = frozenset({"table", "attribute"})

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> list[tuple[str, str]]:
        table, attr = apply.get("table"), apply.get("attribute")
        if apply.get("enabled", True) is False:
            return [("safe", f"{self.name} {table}: disables TTL")]
        return [("destructive", f"{self.name} {table}: enables TTL on {attr}: items whose {attr} is past are deleted")]

    def check(self, apply: Mapping[str, Any]) -> Problems:
        enabled = apply.get("enabled", True)
        bad = [] if isinstance(enabled, bool) or templated(enabled) else ["field 'apply.enabled': expected true/false"]
        return check_str(apply, "attribute") + bad

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client, table = self.client(ctx), payload["table"]
        describe(client, table)
        before = ttl_state(client.describe_time_to_live(TableName=table).get("TimeToLiveDescription") or {})
        wanted = {"enabled": _truthy(payload.get("enabled", True)), "attribute": payload["attribute"]}
        set_ttl(client, table, wanted)
        return {"table": table, "ttl": before}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        if isinstance(undo_state, Mapping):
            set_ttl(self.client(ctx), payload["table"], undo_state["ttl"])


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
