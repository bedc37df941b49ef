"""Open a target session from an Airflow connection (imports Airflow only when called)."""

from __future__ import annotations

import importlib
from typing import Any

from flamingock_provider.core.model import TargetConfig
from flamingock_provider.core.targets import TargetSession
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.targets.connections import get_connection

# conn_type -> "module:factory"; every other conn_type is tried as a DB-API (common SQL) connection.
TARGET_FACTORIES: dict[str, str] = {
    "mongo": "flamingock_provider.targets.mongo:open_mongo_target",
    "aws": "flamingock_provider.targets.aws:open_aws_target",
    "http": "flamingock_provider.targets.http:open_http_target",
    "kafka": "flamingock_provider.targets.kafka:open_kafka_target",
}


def open_target(config: TargetConfig) -> TargetSession:
    """Return a session on the target named by ``config``."""
    conn = get_connection(config.conn_id)
    spec = TARGET_FACTORIES.get(conn.conn_type or "")
    if spec is not None:
        module, _, name = spec.partition(":")
        factory = getattr(importlib.import_module(module), name)
        return factory(config, conn)  # type: ignore[no-any-return]
    return _open_sql(config, conn)


def _open_sql(config: TargetConfig, conn: Any) -> TargetSession:
    import sqlite3

    from flamingock_provider.targets.sql import DbApiTargetSession
    from flamingock_provider.targets.sql_connect import connect, dialect_of

    dialect = dialect_of(conn.conn_type)
    if dialect in ("postgres", "mysql"):
        # Straight through the provider's driver: no Airflow import unless the unit asks for ctx.hook.
        native = connect(conn, f"target {config.name!r}", ConfigurationError)
        try:
            return DbApiTargetSession(native, config, hook_factory=conn.get_hook, dialect=dialect)
        except BaseException:
            native.close()
            raise
    if conn.conn_type == "sqlite":
        # Straight to the file (SqliteHook mis-parses `sqlite:////abs/path`); the hook only on demand.
        path = conn.host or conn.schema
        return DbApiTargetSession(sqlite3.connect(path), config, hook_factory=conn.get_hook)
    hook = _sql_hook(config, conn)
    return DbApiTargetSession(hook.get_conn(), config, hook_factory=lambda: hook)


def _sql_hook(config: TargetConfig, conn: Any) -> Any:
    try:
        hook = conn.get_hook()
    except Exception as err:
        raise ConfigurationError(
            f"target {config.name!r}: connection {config.conn_id!r} of type {conn.conn_type!r} has no usable "
            f"hook ({err}); use a postgres, mysql or sqlite connection (or install the Airflow provider of a "
            f"common-SQL database)"
        ) from err
    if not hasattr(hook, "get_conn") or not hasattr(hook, "get_records"):
        raise ConfigurationError(
            f"target {config.name!r}: connection {config.conn_id!r} of type {conn.conn_type!r} is not a SQL "
            f"database; use a postgres, mysql or sqlite connection (or mongo, aws, http or kafka for other templates)"
        )
    return hook
