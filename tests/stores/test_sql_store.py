"""The SQL audit store and lease on real PostgreSQL and MariaDB servers (each test runs on both)."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from flamingock_provider.core.lease import Fence, Lease
from flamingock_provider.core.model import (
    Action,
    AuditConfig,
    AuditEntry,
    ErrorInfo,
    LockConfig,
    State,
    TargetConfig,
    TxStrategy,
)
from flamingock_provider.exceptions import ConfigurationError, LeaseLostError, LockTimeoutError, StoreError
from flamingock_provider.stores import open_lease_backend, open_store
from flamingock_provider.stores.sql import SqlStore, open_sql_store
from flamingock_provider.targets.connections import parse_env_connection
from tests.fixtures.sql_databases import SqlDatabase, open_sql_test_store


def entry(change: str, state: State = State.APPLIED, pipeline: str = "p", **fields: Any) -> AuditEntry:
    return AuditEntry(
        pipeline=pipeline,
        stage="main",
        change_id=change,
        author="a",
        state=state,
        action=Action.APPLY,
        created_at=datetime.now(timezone.utc),
        execution_id="e",
        **fields,
    )


class CountingConnector:
    """Wraps the store's connector to count the statements the store sends (instrumentation, not a fake)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.statements: list[str] = []

    def __call__(self) -> Any:
        return _CountingConnection(self.inner(), self.statements)


class _CountingConnection:
    def __init__(self, conn: Any, log: list[str]) -> None:
        self._conn, self._log = conn, log

    def cursor(self) -> Any:
        return _CountingCursor(self._conn.cursor(), self._log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _CountingCursor:
    def __init__(self, cur: Any, log: list[str]) -> None:
        self._cur, self._log = cur, log

    def execute(self, sql: str, args: Any = None) -> Any:
        self._log.append(sql)
        return self._cur.execute(sql, args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def counting_store(db: SqlDatabase) -> tuple[SqlStore, list[str]]:
    store = db.open_store()
    counter = CountingConnector(store._connector)
    store.close()
    store._connector = counter
    return store, counter.statements


def test_tables_and_schema_version_row_are_created_when_missing(sql_database: SqlDatabase) -> None:
    store = sql_database.open_store()
    store.close()
    assert sql_database.rows("SELECT component, version FROM flamingock_schema_version") == [
        ("flamingock_audit_log", 1)
    ]
    again = sql_database.open_store()  # existing tables: opened as they are
    again.append(entry("c1"))
    assert len(again.history("p")) == 1
    again.close()


def test_a_newer_schema_version_is_refused(sql_database: SqlDatabase) -> None:
    sql_database.open_store().close()
    conn = sql_database.connect()
    conn.cursor().execute("UPDATE flamingock_schema_version SET version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99.*upgrade flamingock-provider"):
        sql_database.open_store()


def test_entry_round_trips_every_field(sql_store: SqlStore) -> None:
    original = entry(
        "c1",
        State.FAILED,
        tx_strategy=TxStrategy.TX_SHARED,
        transactional=True,
        error=ErrorInfo("ValueError", "bad ünïcode", "trace"),
        metadata={"team": "x"},
        undo_state={"done": [1, {"$oid": "x"}]},
        lock_token=7,
    )
    stored = sql_store.append(original)
    [again] = sql_store.history("p")
    assert stored.seq == again.seq and again.to_dict() == stored.to_dict()


def test_latest_and_history(sql_store: SqlStore) -> None:
    for i in range(20):
        sql_store.append(entry(f"c{i}", State.STARTED))
        sql_store.append(entry(f"c{i}", State.APPLIED))
    sql_store.append(entry("other", pipeline="q"))
    latest = sql_store.latest("p")
    assert len(latest) == 20 and all(e.state is State.APPLIED for e in latest.values())
    assert [e.state for e in sql_store.history("p", "c3")] == [State.STARTED, State.APPLIED]
    seqs = [e.seq for e in sql_store.history("p")]
    assert seqs == sorted(seqs) and len(seqs) == 40


def test_reading_the_state_costs_the_same_queries_as_history_grows(sql_database: SqlDatabase) -> None:
    store, statements = counting_store(sql_database)
    store.append(entry("c0"))
    statements.clear()
    store.latest("p")
    small = len(statements)
    for round_ in range(30):
        for i in range(10):
            store.append(entry(f"c{i}", State.STARTED if round_ % 2 else State.APPLIED))
    statements.clear()
    latest = store.latest("p")
    assert len(statements) == small == 1 and len(latest) == 10
    store.close()


def test_acquire_is_exclusive_and_tokens_increase(sql_store: SqlStore) -> None:
    first = sql_store.acquire("p", "A", 30)
    assert first is not None and first.token == 1
    assert sql_store.acquire("p", "B", 30) is None
    assert sql_store.acquire("q", "B", 30) is not None  # other pipelines never block
    assert sql_store.release("p", "A", 1)
    assert not sql_store.release("p", "A", 1)  # checked: a second release matched nothing
    second = sql_store.acquire("p", "B", 30)
    assert second is not None and second.token == 2
    again = sql_store.acquire("p", "B", 30)  # the same owner re-acquires with a new token
    assert again is not None and again.token == 3


def test_extend_checks_owner_and_token(sql_store: SqlStore) -> None:
    held = sql_store.acquire("p", "A", 30)
    assert held is not None
    assert sql_store.extend("p", "A", held.token + 1, 30) is None
    assert sql_store.extend("p", "B", held.token, 30) is None
    extended = sql_store.extend("p", "A", held.token, 60)
    assert extended is not None and extended.expires_at > held.expires_at


def test_expiry_is_on_the_server_clock(sql_database: SqlDatabase, sql_store: SqlStore) -> None:
    held = sql_store.acquire("p", "A", 120)
    assert held is not None
    [(server_now,)] = sql_database.rows("SELECT CURRENT_TIMESTAMP" if sql_database.kind == "postgres" else
                                        "SELECT UTC_TIMESTAMP(6)")  # fmt: skip
    server_now = server_now if server_now.tzinfo else server_now.replace(tzinfo=timezone.utc)
    assert held.expires_at - held.acquired_at == timedelta(seconds=120)
    assert abs(held.acquired_at - server_now) < timedelta(seconds=5)
    assert held.acquired_at.tzinfo is not None and held.acquired_at.utcoffset() == timedelta(0)


def test_expiry_allows_takeover_and_fences_the_old_holder(sql_store: SqlStore) -> None:
    assert sql_store.acquire("p", "A", 0.3) is not None
    time.sleep(0.5)
    taken = sql_store.acquire("p", "B", 30)
    assert taken is not None and taken.token == 2
    assert sql_store.extend("p", "A", 1, 10) is None
    assert not sql_store.release("p", "A", 1)
    with pytest.raises(LeaseLostError):
        sql_store.append(entry("c1"), fence=Fence("p", "A", 1))
    assert sql_store.history("p") == []
    sql_store.append(entry("c1"), fence=Fence("p", "B", 2))
    assert len(sql_store.history("p")) == 1


def test_fenced_append_refused_after_expiry_even_without_takeover(sql_store: SqlStore) -> None:
    sql_store.acquire("p", "A", 0.3)
    time.sleep(0.5)
    with pytest.raises(LeaseLostError, match="refused by the store"):
        sql_store.append(entry("c1"), fence=Fence("p", "A", 1))
    assert sql_store.latest("p") == {}


def test_current_and_force_release(sql_store: SqlStore) -> None:
    assert sql_store.current("p") is None
    sql_store.acquire("p", "A", 30)
    holder = sql_store.current("p")
    assert holder is not None and holder.owner == "A" and holder.expires_at.utcoffset() == timedelta(0)
    assert "backend_pid" in holder.extra
    previous = sql_store.force_release("p")
    assert previous is not None and previous.owner == "A"
    assert sql_store.current("p") is None and sql_store.force_release("p") is None


def test_lease_wait_times_out_naming_the_holder(sql_store: SqlStore) -> None:
    sql_store.acquire("p", "cli/host/1/abcd", 60)
    lease = Lease(sql_store, "p", "B", LockConfig(wait_timeout_seconds=0.3, poke_interval_seconds=0.05))
    with pytest.raises(LockTimeoutError) as err:
        lease.acquire()
    assert "cli/host/1/abcd" in str(err.value) and err.value.exit_code == 3


def test_heartbeat_keeps_a_short_lease_alive(sql_store: SqlStore) -> None:
    lease = Lease(sql_store, "p", "A", LockConfig(lease_seconds=0.6))
    lease.acquire()
    with lease.heartbeat():
        time.sleep(1.5)
    lease.check()
    assert sql_store.acquire("p", "B", 1) is None


def _open_shared(db: SqlDatabase, store: SqlStore) -> Any:
    session = store.shared_target(TargetConfig("warehouse", "audit_db"))
    assert session is not None
    return session


@pytest.mark.parametrize("how", ["expiry", "unlock"])
def test_takeover_or_unlock_ends_the_previous_holders_open_transaction(sql_database: SqlDatabase, how: str) -> None:
    setup = sql_database.connect()
    setup.cursor().execute("CREATE TABLE products (id INT PRIMARY KEY, who VARCHAR(20))")
    setup.close()
    dead = sql_database.open_store()
    heir = sql_database.open_store()
    assert dead.acquire("p", "dead", 0.3 if how == "expiry" else 30) is not None
    session = _open_shared(sql_database, dead)
    session.begin()
    session.execute("INSERT INTO products VALUES (1, 'dead')")  # a row lock the frozen holder never releases
    if how == "expiry":
        time.sleep(0.5)
        assert heir.acquire("p", "heir", 30) is not None  # the takeover ends the dead holder's connection
    else:
        previous = heir.force_release("p")  # `flamingock unlock --force`
        assert previous is not None and previous.owner == "dead"
    writer = sql_database.connect()
    cur = writer.cursor()
    cur.execute("SET lock_timeout = '10s'" if sql_database.kind == "postgres" else "SET innodb_lock_wait_timeout = 10")
    cur.execute("INSERT INTO products VALUES (1, 'heir')")  # would wait for the open transaction otherwise
    writer.close()
    with pytest.raises(StoreError):
        session.commit()
    assert sql_database.rows("SELECT id, who FROM products") == [(1, "heir")]
    dead.close()
    heir.close()


def test_shared_transaction_commits_change_and_entries_together(sql_database: SqlDatabase) -> None:
    store = sql_database.open_store()
    held = store.acquire("p", "A", 30)
    assert held is not None
    fence = Fence("p", "A", held.token)
    for outcome in ("rollback", "commit"):
        session = _open_shared(sql_database, store)
        session.begin()
        session.execute(f"CREATE TABLE IF NOT EXISTS t_{outcome} (x INT)" if sql_database.kind == "postgres" else
                        "INSERT INTO flamingock_schema_version VALUES ('x', 0)")  # fmt: skip
        store.append(entry(outcome, State.STARTED), fence=fence, tx=session)
        session.rollback() if outcome == "rollback" else session.commit()
    assert list(store.latest("p")) == ["commit"]
    store.close()


def test_unreachable_server_is_a_clear_store_error(sql_database: SqlDatabase) -> None:
    uri = sql_database.uri.replace(f":{sql_database.server.port}/", ":9/")
    with pytest.raises(StoreError) as err:
        open_sql_store(AuditConfig(conn_id="x"), parse_env_connection("x", uri))
    message = str(err.value)
    assert message.startswith(f"cannot reach audit store 'x' ({sql_database.dialect} at 127.0.0.1:9): ")
    assert message.endswith("; check the connection")


def test_wrong_credentials_are_a_clear_store_error(sql_database: SqlDatabase) -> None:
    uri = sql_database.uri.replace(f"//{sql_database.server.user}@", "//nobody:wrong@")
    with pytest.raises(StoreError, match=r"cannot reach audit store 'x' .*(nobody|denied).*; check the connection"):
        open_sql_store(AuditConfig(conn_id="x"), parse_env_connection("x", uri))


def test_server_restart_is_a_store_error_then_the_store_reconnects(sql_database: SqlDatabase) -> None:
    store = sql_database.open_store()
    store.append(entry("c1"))
    sql_database.server.stop()
    try:
        with pytest.raises(StoreError, match="audit store 'audit_db' .* check the connection"):
            store.latest("p")
    finally:
        sql_database.server.start()
    assert list(store.latest("p")) == ["c1"]
    store.close()


def test_open_store_and_lock_conn_id_from_the_airflow_connection(
    sql_database: SqlDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AUDIT_DB", sql_database.uri)
    monkeypatch.setenv("AIRFLOW_CONN_LOCKS_DB", sql_database.uri)
    store = open_store(AuditConfig(conn_id="audit_db"))
    assert isinstance(store, SqlStore)
    assert open_lease_backend(LockConfig(conn_id="audit_db"), store) is store  # same connection: one store
    other = open_lease_backend(LockConfig(conn_id="locks_db"), store)
    assert isinstance(other, SqlStore) and other is not store
    assert other.acquire("p", "A", 30) is not None and store.acquire("p", "B", 30) is None
    store.close()
    other.close()  # type: ignore[attr-defined]


def test_schema_option_is_postgres_only(sql_database: SqlDatabase) -> None:
    if sql_database.kind == "postgres":
        store = sql_database.open_store(schema="ops")
        store.append(entry("c1"))
        assert sql_database.rows("SELECT count(*) FROM ops.flamingock_audit_log") == [(1,)]
        store.close()
    else:
        with pytest.raises(ConfigurationError, match="only PostgreSQL has schemas"):
            sql_database.open_store(schema="ops")


def _grab(uri: str, owner: str, rounds: int, out: Any) -> None:
    store = open_sql_store(AuditConfig(conn_id="audit_db"), parse_env_connection("audit_db", uri))
    held = []
    for _ in range(rounds):
        info = store.acquire("p", owner, 5)
        if info is not None:
            start = time.time()
            time.sleep(0.002)
            held.append((start, time.time(), info.token))
            assert store.release("p", owner, info.token)
    out.put(held)
    store.close()


def test_processes_never_hold_the_lease_together(sql_database: SqlDatabase) -> None:
    sql_database.open_store().close()
    queue: Any = multiprocessing.get_context("spawn").Queue()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_grab, args=(sql_database.uri, f"o{i}", 25, queue)) for i in range(4)]
    for p in procs:
        p.start()
    intervals = sorted(i for _ in procs for i in queue.get(timeout=120))
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    tokens = [t for _, _, t in intervals]
    assert len(tokens) == len(set(tokens)) and intervals
    for (_, end, _), (start, _, _) in itertools.pairwise(intervals):
        assert end <= start


def test_threads_racing_for_a_fresh_lease_row_get_one_holder(sql_database: SqlDatabase) -> None:
    stores = [open_sql_test_store(sql_database) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    results: list[Any] = []

    def race(store: SqlStore, i: int) -> None:
        barrier.wait()
        results.append(store.acquire("fresh", f"o{i}", 30))

    threads = [threading.Thread(target=race, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len([r for r in results if r is not None]) == 1 and len(results) == len(stores)
    for store in stores:
        store.close()
