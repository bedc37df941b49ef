"""The backends of the store contract suites (``test_audit_contract.py``, ``test_lease_contract.py``).

``BACKENDS`` is the registry: one :class:`Entry` per store or lease backend, each with a function that
opens it for one test on a real server (a session fixture of ``tests/fixtures/``). The audit suite runs
over every entry with ``audit=True`` (the store keeps its own lease, so fenced writes are checked too);
the lease suite over every entry. Adding a store is one opener and one line in ``BACKENDS``, e.g.::

    def open_postgres(request: pytest.FixtureRequest, clock: FakeClock) -> Backend:
        dsn = request.getfixturevalue("postgres_db").dsn  # a fixture of tests/fixtures/, a database per test
        store = PostgresStore(dsn, clock=clock)  # expiry on the runner's clock: inject it (else pass None)
        reopen = partial(postgres_store, dsn)  # a module-level opener in racers.py, for spawned processes
        return Backend("postgres", store, store, clock, reopen, statement_log(store), [store.close])

    BACKENDS = [..., Entry("postgres", open_postgres, audit=True)]

``queries`` records what ``latest()`` sends to the server (one query, whatever the history); a lease
backend that is no audit store (Redis) passes ``store=None`` and ``queries=None`` with ``audit=False``.
``clock`` is the store's injected clock when the runner's clock judges expiry (SQLite, DynamoDB): the
tests move it instead of sleeping. A store on the server's clock (MongoDB, Redis) passes ``clock=None``
and the tests wait real seconds past a short lease (see :meth:`Backend.pass_expiry`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

import pytest

from flamingock_provider.core.audit import AuditStore
from flamingock_provider.core.lease import LeaseBackend
from flamingock_provider.core.model import Action, AuditEntry, State
from flamingock_provider.stores.redis_lease import RedisLeaseBackend
from flamingock_provider.stores.sqlite import SqliteStore
from tests.stores.racers import dynamodb_store, mongo_store, redis_backend, sql_store, sqlite_store

# Calls latest() makes: a context manager yielding the list the store's queries are appended to.
QueryLog = Callable[[], AbstractContextManager[list[str]]]

SERVER_CLOCK_TTL_S = 0.5  # a short lease on a server's clock ...
SERVER_CLOCK_MARGIN_S = 1.0  # ... and how long past its expiry a test waits: never less than a second
RUNNER_CLOCK_TTL_S = 10.0  # on an injected clock the lease can be long: the test moves the clock


def entry(change: str, state: State = State.APPLIED, pipeline: str = "p", **extra: Any) -> AuditEntry:
    """An audit entry of change ``change`` (created now, to the second: MongoDB keeps milliseconds)."""
    return AuditEntry(
        pipeline=pipeline,
        stage="main",
        change_id=change,
        author="a",
        state=state,
        action=Action.APPLY,
        created_at=datetime.now(timezone.utc).replace(microsecond=0),
        execution_id="e",
        **extra,
    )


class FakeClock:
    """An injected clock (epoch seconds) that moves only when told: expiry without sleeping."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """A ``sleep=`` for :class:`Lease`: records the wait and moves the clock instead of waiting."""
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Backend:
    """One backend opened for one test."""

    name: str
    lease: LeaseBackend
    store: AuditStore | None  # the audit store, when this backend is one (the same object as ``lease``)
    clock: FakeClock | None  # the store's injected clock; None when the server's clock judges expiry
    reopen: Callable[[], LeaseBackend]  # picklable: the same backend opened again in another process
    queries: QueryLog | None = None  # records what latest() sends to the server
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def short_ttl(self) -> float:
        """A lease length a test lets expire."""
        return RUNNER_CLOCK_TTL_S if self.clock is not None else SERVER_CLOCK_TTL_S

    def pass_expiry(self, ttl_s: float) -> None:
        """Let a lease of ``ttl_s`` taken just now expire: move the clock, or wait a second past it."""
        if self.clock is not None:
            self.clock.advance(ttl_s + 1.0)
        else:
            time.sleep(ttl_s + SERVER_CLOCK_MARGIN_S)

    def lease_clock(self) -> tuple[Callable[[], float], Callable[[float], None]]:
        """``clock=`` and ``sleep=`` for a :class:`Lease` on this backend: the store's own fake clock, or real time."""
        if self.clock is not None:
            return self.clock, self.clock.sleep
        return time.monotonic, time.sleep

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()


Opener = Callable[[pytest.FixtureRequest, FakeClock], Backend]


@dataclass(frozen=True)
class Entry:
    name: str
    open: Opener
    audit: bool  # an audit store (with its own lease); False: a lease backend only


# -- SQLite: the embedded store, expiry on the runner's clock ------------------------------------


def open_sqlite(request: pytest.FixtureRequest, clock: FakeClock) -> Backend:
    path = request.getfixturevalue("tmp_path") / "audit.db"
    store = SqliteStore(path, clock=clock)

    @contextmanager
    def statements() -> Iterator[list[str]]:
        seen: list[str] = []
        store._conn().set_trace_callback(seen.append)
        try:
            yield seen
        finally:
            store._conn().set_trace_callback(None)

    return Backend("sqlite", store, store, clock, partial(sqlite_store, str(path)), statements, [store.close])


# -- MongoDB (SecantusDB): expiry on the server's clock ------------------------------------------


def open_mongo(request: pytest.FixtureRequest, clock: FakeClock) -> Backend:
    from pymongo import monitoring

    database = request.getfixturevalue("mongo_conn")
    commands: list[str] | None = None

    class Listener(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if commands is not None:
                commands.append(event.command_name)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    @contextmanager
    def sent() -> Iterator[list[str]]:
        nonlocal commands
        commands = []
        try:
            yield commands
        finally:
            commands = None

    uri = database.server.uri
    store = mongo_store(uri, database.name, [Listener()])
    return Backend("mongo", store, store, None, partial(mongo_store, uri, database.name), sent, [store.close])


# -- DynamoDB (moto server): expiry on the runner's clock ----------------------------------------


def open_dynamodb(request: pytest.FixtureRequest, clock: FakeClock) -> Backend:
    endpoint = request.getfixturevalue("moto").endpoint_url
    store = dynamodb_store(endpoint, clock)

    @contextmanager
    def calls() -> Iterator[list[str]]:
        seen: list[str] = []

        def record(event_name: str, **_: Any) -> None:
            seen.append(event_name.rsplit(".", 1)[-1])

        store.client.meta.events.register("before-call.dynamodb", record)
        try:
            yield seen
        finally:
            store.client.meta.events.unregister("before-call.dynamodb", record)

    return Backend("dynamodb", store, store, clock, partial(dynamodb_store, endpoint), calls)


# -- Redis: a lease backend only, expiry on the server's clock -----------------------------------


def open_redis(request: pytest.FixtureRequest, clock: FakeClock) -> Backend:
    server = request.getfixturevalue("redis_server")
    server.start()  # a no-op unless an outage test left it stopped
    client = server.client()
    backend = RedisLeaseBackend(client)
    return Backend("redis", backend, None, None, partial(redis_backend, server.port), None, [client.close])


# -- PostgreSQL and MariaDB: expiry on the server's clock ----------------------------------------


def _open_sql(fixture: str, name: str, request: pytest.FixtureRequest) -> Backend:
    _, uri = request.getfixturevalue(fixture)  # a fresh database of the session's server
    store = sql_store(uri)
    sent: list[str] | None = None
    connector = store._connector

    class Recording:  # wraps the store's connections to see what it sends (instrumentation, no fake)
        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def cursor(self) -> Any:
            return RecordingCursor(self._conn.cursor())

        def __getattr__(self, attr: str) -> Any:
            return getattr(self._conn, attr)

    class RecordingCursor:
        def __init__(self, cursor: Any) -> None:
            self._cursor = cursor

        def execute(self, sql: str, args: Any = None) -> Any:
            if sent is not None:
                sent.append(sql)
            return self._cursor.execute(sql, args)

        def __getattr__(self, attr: str) -> Any:
            return getattr(self._cursor, attr)

    store.close()
    store._connector = lambda: Recording(connector())

    @contextmanager
    def statements() -> Iterator[list[str]]:
        nonlocal sent
        sent = []
        try:
            yield sent
        finally:
            sent = None

    return Backend(name, store, store, None, partial(sql_store, uri), statements, [store.close])


def open_postgres(request: pytest.FixtureRequest, clock: FakeClock) -> Backend:
    return _open_sql("postgres_db", "postgres", request)


def open_mariadb(request: pytest.FixtureRequest, clock: FakeClock) -> Backend:
    return _open_sql("mariadb_db", "mariadb", request)


# The registry: the contract suites run over every entry (a new store: its opener above, one line here).
BACKENDS: list[Entry] = [
    Entry("sqlite", open_sqlite, audit=True),
    Entry("mongo", open_mongo, audit=True),
    Entry("dynamodb", open_dynamodb, audit=True),
    Entry("redis", open_redis, audit=False),
    Entry("postgres", open_postgres, audit=True),
    Entry("mariadb", open_mariadb, audit=True),
]


def _opened(request: pytest.FixtureRequest) -> Iterator[Backend]:
    entry: Entry = request.param
    backend = entry.open(request, FakeClock())
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(params=[e for e in BACKENDS if e.audit], ids=lambda e: e.name)
def audit_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Every audit store, each keeping its own lease."""
    yield from _opened(request)


@pytest.fixture(params=BACKENDS, ids=lambda e: e.name)
def lease_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Every lease backend: the audit stores' own leases and Redis."""
    yield from _opened(request)


@pytest.fixture
def key() -> str:
    """A lease key of this test alone (the Redis server is shared by the session)."""
    return f"pipeline_{uuid.uuid4().hex[:10]}"
