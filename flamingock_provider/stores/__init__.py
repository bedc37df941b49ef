"""Audit-store and lease backends, chosen from pipeline.yaml's ``audit:`` and ``lock:``.

The embedded SQLite store needs no Airflow import; a ``conn_id`` is resolved the Airflow way.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["embedded_store_path", "flamingock_home", "open_lease_backend", "open_store"]

from flamingock_provider.core.audit import AuditStore
from flamingock_provider.core.lease import LeaseBackend
from flamingock_provider.core.model import AuditConfig, LockConfig
from flamingock_provider.core.paths import embedded_store_path, flamingock_home
from flamingock_provider.exceptions import ConfigurationError

# audit connection type -> "module:factory(config, connection) -> store"
STORE_FACTORIES: dict[str, str] = {
    "sqlite": "flamingock_provider.stores.sqlite:open_sqlite_store",
    "mongo": "flamingock_provider.stores.mongo:open_mongo_store",
    "aws": "flamingock_provider.stores.dynamodb:open_dynamodb_store",
    "postgres": "flamingock_provider.stores.sql:open_sql_store",
    "mysql": "flamingock_provider.stores.sql:open_sql_store",
}
# lock connection type -> "module:factory(config, connection) -> lease backend"
LEASE_FACTORIES: dict[str, str] = {
    "redis": "flamingock_provider.stores.redis_lease:open_redis_lease",
    "postgres": "flamingock_provider.stores.sql:open_sql_lease",
    "mysql": "flamingock_provider.stores.sql:open_sql_lease",
}


def open_store(config: AuditConfig) -> AuditStore:
    """Open the audit store a pipeline's ``audit:`` names (the embedded SQLite file by default)."""
    if config.conn_id is None:
        from flamingock_provider.stores.sqlite import SqliteStore

        return SqliteStore(embedded_store_path(), table=config.table, lock_table=config.lock_table)
    from flamingock_provider.targets.connections import get_connection

    conn = get_connection(config.conn_id)
    spec = STORE_FACTORIES.get(conn.conn_type or "")
    if spec is None:
        raise ConfigurationError(
            f"audit connection {config.conn_id!r} has type {conn.conn_type!r}; the audit store must be one of "
            f"{', '.join(sorted(STORE_FACTORIES))} (an Airflow connection of that type)"
        )
    return _load(spec)(config, conn)  # type: ignore[no-any-return]


def open_lease_backend(config: LockConfig, store: AuditStore) -> LeaseBackend:
    """Return the lease backend: Redis when ``lock.conn_id`` is set, else the audit store itself."""
    if config.conn_id is not None:
        from flamingock_provider.targets.connections import get_connection

        if config.conn_id == getattr(store, "conn_id", None) and hasattr(store, "acquire"):
            return store  # type: ignore[return-value]
        conn = get_connection(config.conn_id)
        spec = LEASE_FACTORIES.get(conn.conn_type or "")
        if spec is None:
            raise ConfigurationError(
                f"pipeline.yaml: field 'lock.conn_id': connection {config.conn_id!r} has type {conn.conn_type!r}; the "
                f"lease can live in a {', '.join(sorted(LEASE_FACTORIES))} connection (or remove lock.conn_id to keep "
                f"it in the audit store)"
            )
        return _load(spec)(config, conn)  # type: ignore[no-any-return]
    if not hasattr(store, "acquire"):
        raise ConfigurationError(f"audit store {type(store).__name__} keeps no lease; set lock.conn_id to redis")
    return store  # type: ignore[return-value]


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)
