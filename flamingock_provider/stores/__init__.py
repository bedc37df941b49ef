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
            f"audit connection {config.conn_id!r} has type {conn.conn_type!r}; the audit store must be a "
            f"sqlite, mongo or aws connection"
        )
    return _load(spec)(config, conn)  # type: ignore[no-any-return]


def open_lease_backend(config: LockConfig, store: AuditStore) -> LeaseBackend:
    """Return the lease backend: Redis when ``lock.conn_id`` is set, else the audit store itself."""
    if config.conn_id is not None:
        from flamingock_provider.stores.redis_lease import RedisLeaseBackend
        from flamingock_provider.targets.connections import get_connection

        conn_type = get_connection(config.conn_id).conn_type
        if conn_type != "redis":
            raise ConfigurationError(
                f"pipeline.yaml: field 'lock.conn_id': connection {config.conn_id!r} has type {conn_type!r}; the "
                f"lease can only live in a redis connection (or remove lock.conn_id to keep it in the audit store)"
            )
        return RedisLeaseBackend.from_conn_id(config.conn_id)
    if not hasattr(store, "acquire"):
        raise ConfigurationError(f"audit store {type(store).__name__} keeps no lease; set lock.conn_id to redis")
    return store  # type: ignore[return-value]


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)
