"""What a process racing for a lease runs (``test_lease_contract.py``): light imports, so that a spawned
child starts fast, and openers that a ``functools.partial`` carries to it by reference."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flamingock_provider.core.lease import Lease, LeaseBackend
from flamingock_provider.core.model import LockConfig

ROUNDS = 6


def contend(reopen: Callable[[], LeaseBackend], key: str, owner: str, ready: Any, go: Any, out: Any) -> None:
    """Take the lease through Lease.acquire (waiting) ROUNDS times, hold it briefly, release it.

    Puts ``(holds, waits)`` on ``out``: each hold as (start_ns, end_ns, token), and how often it waited.
    """
    backend = reopen()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    config = LockConfig(lease_seconds=30, wait_timeout_seconds=120, poke_interval_seconds=0.01)
    holds: list[tuple[int, int, int]] = []
    ready.put(owner)
    go.wait(120)
    for _ in range(ROUNDS):
        lease = Lease(backend, key, owner, config, sleep=sleep)
        info = lease.acquire()
        start = time.monotonic_ns()
        time.sleep(0.005)
        holds.append((start, time.monotonic_ns(), info.token))
        if not lease.release():
            raise AssertionError(f"{owner} lost a lease it held: token {info.token}")
    out.put((holds, len(waits)))


def sqlite_store(path: str) -> LeaseBackend:
    from flamingock_provider.stores.sqlite import SqliteStore

    return SqliteStore(path)


def mongo_store(uri: str, database: str, listeners: list[Any] | None = None) -> Any:
    """A MongoStore on its own pymongo client (tz-aware dates, short server selection)."""
    from pymongo import MongoClient

    from flamingock_provider.stores.mongo import MongoStore

    def connect() -> tuple[None, MongoClient[Any]]:
        return None, MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10_000, event_listeners=listeners or [])

    return MongoStore(connect, database)


def dynamodb_store(endpoint_url: str, clock: Callable[[], float] = time.time) -> Any:
    """A DynamoDBStore on its own boto3 client of the moto server."""
    import boto3

    from flamingock_provider.stores.dynamodb import DynamoDBStore

    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return DynamoDBStore(client, clock=clock)


def redis_backend(port: int) -> LeaseBackend:
    import redis

    from flamingock_provider.stores.redis_lease import RedisLeaseBackend

    return RedisLeaseBackend(redis.Redis(host="127.0.0.1", port=port, socket_timeout=5))


def sql_store(uri: str) -> Any:
    """A SqlStore (PostgreSQL or MySQL/MariaDB) on the Airflow connection URI ``uri``."""
    from flamingock_provider.core.model import AuditConfig
    from flamingock_provider.stores.sql import open_sql_store
    from flamingock_provider.targets.connections import parse_env_connection

    return open_sql_store(AuditConfig(conn_id="audit_db"), parse_env_connection("audit_db", uri))
