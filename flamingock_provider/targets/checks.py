"""Evaluate one precondition (``checks:``) on its target session, read-only (SPEC §14).

The executor calls :func:`evaluate` in a worker thread with a session opened in that thread, and
:func:`cancel` from its own thread when the check runs past ``timeout_seconds``. Every read also
carries the backend's own bound where there is one (SQLite progress handler, PostgreSQL
``statement_timeout``, MongoDB ``maxTimeMS``, the HTTP request timeout).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from flamingock_provider.core.checks import Observation, expect_value
from flamingock_provider.core.model import CheckSpec
from flamingock_provider.core.targets import TargetSession
from flamingock_provider.exceptions import ConfigurationError

_KINDS = {"sql": "sql", "mongo": "mongo", "dynamodb": "aws", "s3": "aws", "http": "http"}


def evaluate(check: CheckSpec, session: TargetSession) -> Observation:
    """Run ``check`` on ``session``; return what it saw."""
    wanted = _KINDS[check.kind]
    if session.kind != wanted:
        raise ConfigurationError(
            f"precondition {check.label} needs a {wanted} target, but target {session.config.name!r} is "
            f"{session.kind}; set 'target:' on the check"
        )
    reader = {"sql": _sql, "mongo": _mongo, "dynamodb": _dynamodb, "s3": _s3, "http": _http}[check.kind]
    return reader(check.spec, session, check.timeout_seconds)


def cancel(session: TargetSession) -> None:
    """Ask the backend to stop a check that ran out of time (best effort)."""
    native = session.native
    if isinstance(native, sqlite3.Connection):
        native.interrupt()  # the one sqlite3 call allowed from another thread
    elif hasattr(native, "cancel"):
        native.cancel()  # psycopg: cancels the running statement


def _sql(spec: Mapping[str, Any], session: TargetSession, timeout: float) -> Observation:
    from flamingock_provider.targets.sql_reads import first_row

    row = first_row(session.native, spec["sql"], timeout)
    if "expect_rows" in spec:
        wanted = spec["expect_rows"]
        some = row is not None
        return Observation(some == (wanted == "some"), "some rows" if some else "no rows", f"{wanted} rows")
    saw = row[0] if row else None
    return Observation(row is not None and expect_value(saw, spec["expect"]), _jsonable(saw), repr(spec["expect"]))


def _mongo(spec: Mapping[str, Any], session: TargetSession, timeout: float) -> Observation:
    from flamingock_provider.templates._mongo_values import to_bson

    coll = session.native[spec["collection"]]
    n = coll.count_documents(to_bson(spec.get("filter") or {}), maxTimeMS=max(1, int(timeout * 1000)))
    return Observation(n == spec["expect_count"], n, f"{spec['expect_count']} documents")


def _dynamodb(spec: Mapping[str, Any], session: TargetSession, timeout: float) -> Observation:
    from flamingock_provider.targets.aws import table_status
    from flamingock_provider.templates._dynamodb_items import to_item

    client = session.client("dynamodb")
    table = spec["table"]
    if "key" not in spec:
        exists = table_status(client, table) is not None
        return Observation(
            exists == (spec["expect"] == "exists"), "table exists" if exists else "no table", spec["expect"]
        )
    reply = client.get_item(TableName=table, Key=to_item(spec["key"]), ConsistentRead=True)
    exists = "Item" in reply
    return Observation(exists == (spec["expect"] == "exists"), "item exists" if exists else "no item", spec["expect"])


def _s3(spec: Mapping[str, Any], session: TargetSession, timeout: float) -> Observation:
    from flamingock_provider.templates._s3_base import read

    client = session.client("s3")
    if "key" in spec:
        exists = read(client.head_object, Bucket=spec["bucket"], Key=spec["key"]) is not None
        saw = f"s3://{spec['bucket']}/{spec['key']} {'exists' if exists else 'absent'}"
        return Observation(exists == (spec["expect"] == "exists"), saw, spec["expect"])
    prefix = spec.get("prefix", "")
    reply = read(client.list_objects_v2, Bucket=spec["bucket"], Prefix=prefix, MaxKeys=1)
    if reply is None:
        return Observation(False, f"bucket {spec['bucket']} does not exist", spec["expect"])
    some = int(reply.get("KeyCount", 0)) > 0
    saw = f"{'objects' if some else 'no objects'} under s3://{spec['bucket']}/{prefix}"
    return Observation(some == (spec["expect"] == "exists"), saw, spec["expect"])


def _http(spec: Mapping[str, Any], session: TargetSession, timeout: float) -> Observation:
    status = spec.get("expect_status", [200])
    expected = [int(s) for s in (status if isinstance(status, list) else [status])]
    response = session.request(  # type: ignore[attr-defined]
        str(spec.get("method", "GET")),
        str(spec["endpoint"]),
        headers=spec.get("headers"),
        expect_status=range(100, 600),  # every status is an answer: the check compares it below
        timeout=timeout,
    )
    return Observation(response.status_code in expected, response.status_code, f"status in {expected}")


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)
