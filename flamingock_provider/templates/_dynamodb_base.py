"""What every ``dynamodb.*`` template shares: payload checks (parse time, no I/O) and the base class.

No boto3 import at module level.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.core.template import Template
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.targets.aws import aws_session, table_status

MAX_ITEMS_PER_STEP = 90  # a transaction holds 100 writes; leave room for audit entries and the marker
KEY_TYPES = frozenset({"S", "N", "B"})
BILLING_MODES = frozenset({"PAY_PER_REQUEST", "PROVISIONED"})
Problems = list[str]


# -- payload checks (parse time, no I/O) ------------------------------------------------------


def templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def check_str(payload: Mapping[str, Any], key: str, where: str = "apply") -> Problems:
    value = payload.get(key)
    if key not in payload or (isinstance(value, str) and value):
        return []
    return [f"field '{where}.{key}': expected a non-empty string, got {value!r}"]


def check_key(payload: Mapping[str, Any], key: str, where: str) -> Problems:
    spec = payload.get(key)
    if key not in payload or templated(spec):
        return []
    if not isinstance(spec, Mapping) or set(spec) != {"name", "type"} or spec["type"] not in KEY_TYPES:
        return [f"field '{where}.{key}': expected {{name: <attribute>, type: S|N|B}}, got {spec!r}"]
    return []


def check_index(index: Any, where: str) -> Problems:
    if not isinstance(index, Mapping):
        return [f"field '{where}': expected an index mapping, got {index!r}"]
    allowed = ("name", "partition_key", "sort_key", "projection", "read_capacity", "write_capacity")
    problems = [f"field '{where}.{k}': unknown key{did_you_mean(str(k), allowed)}" for k in index if k not in allowed]
    problems += check_str(index, "name", where) + check_key(index, "partition_key", where)
    problems += check_key(index, "sort_key", where)
    if "name" not in index or "partition_key" not in index:
        problems.append(f"field '{where}': an index needs 'name' and 'partition_key'")
    return problems


def check_choice(payload: Mapping[str, Any], key: str, choices: frozenset[str]) -> Problems:
    value = payload.get(key)
    if key not in payload or templated(value) or value in choices:
        return []
    return [f"field 'apply.{key}': {value!r} is not one of {', '.join(sorted(choices))}"]


def check_list(payload: Mapping[str, Any], key: str, limit: int) -> Problems:
    value = payload.get(key)
    if key not in payload or templated(value):
        return []
    if not isinstance(value, list) or not value or not all(isinstance(v, Mapping) for v in value):
        return [f"field 'apply.{key}': expected a non-empty list of mappings, got {type(value).__name__}"]
    if len(value) > limit:
        return [f"field 'apply.{key}': {len(value)} entries, over {limit} per step; split them into steps or units"]
    return []


# -- target access ------------------------------------------------------------------------------


def describe(client: Any, table: str) -> Mapping[str, Any]:
    described = table_status(client, table)
    if described is None:
        raise ConfigurationError(f"DynamoDB table {table!r} does not exist; create it first (dynamodb.create_table)")
    return described


def key_names(described: Mapping[str, Any]) -> list[str]:
    return [k["AttributeName"] for k in described["KeySchema"]]


# (connection, execution, table) -> the table's key attribute names, so that the item templates
# describe a table once per run, not once per unit. Only a table's deletion can change its keys:
# the templates that delete or (re)create a table forget it.
_KEYS: dict[tuple[str, str, str], list[str]] = {}


def table_keys(ctx: ChangeContext, client: Any, table: str) -> list[str]:
    """The key attribute names of ``table``: one DescribeTable per run (a missing table is an error)."""
    session = aws_session(ctx, ctx.change.template or "dynamodb")
    cache_key = (session.clients.conn_id, ctx.execution_id, table)
    if cache_key not in _KEYS:
        if len(_KEYS) > 256:  # a long-lived process runs many executions: keep the cache small
            _KEYS.clear()
        _KEYS[cache_key] = key_names(describe(client, table))
    return _KEYS[cache_key]


def forget_table(table: str) -> None:
    """Drop what :func:`table_keys` knows of ``table`` (it is being deleted or created)."""
    for cache_key in [k for k in _KEYS if k[2] == table]:
        del _KEYS[cache_key]


# -- the template base ----------------------------------------------------------------------------


class DynamoTemplate(Template):
    """Common parts: an aws target, a ``table``, rollbacks derived from the undo state."""

    target_kind = "aws"
    op: ClassVar[str] = ""

    def validate(self, apply: Mapping[str, Any], rollback: Mapping[str, Any] | None) -> list[str]:
        problems = super().validate(apply, rollback) + check_str(apply, "table")
        if rollback is not None:
            problems.append(f"field 'rollback': {self.name!r} derives its rollback from what apply replaced; remove it")
        return problems + self.check(apply)

    def check(self, apply: Mapping[str, Any]) -> Problems:
        return []

    def derives_rollback(self, apply: Mapping[str, Any]) -> bool:
        return True

    def client(self, ctx: ChangeContext) -> Any:
        return aws_session(ctx, self.name).client("dynamodb")

    # -- risk and impact (SPEC §14) --------------------------------------------------------------

    level: ClassVar[str] = "safe"
    effect: ClassVar[str] = "creates"

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> list[tuple[str, str]]:
        return [(self.level, f"{self.name} {apply.get('table')}: {self.effect}")]


def count_items(client: Any, table: str, timeout: float, limit: int = 1000) -> str:
    """Count a table's items with a bounded ``Scan(Select=COUNT)``: ``"N items"`` or ``"N+ items"``."""
    import time

    deadline, seen, start = time.monotonic() + timeout, 0, None
    while True:
        args: dict[str, Any] = {"TableName": table, "Select": "COUNT", "Limit": limit - seen}
        if start is not None:
            args["ExclusiveStartKey"] = start
        reply = client.scan(**args)
        seen += int(reply.get("Count", 0))
        start = reply.get("LastEvaluatedKey")
        if start is None:
            return f"{seen:,} items"
        if seen >= limit or time.monotonic() > deadline:
            return f"{seen:,}+ items"
