"""What the SQL store adds to the store contract suites (test_audit_contract.py, test_lease_contract.py, which run
on PostgreSQL and MariaDB too): schema creation and versions, the server clock, ending a dead holder's
transaction, shared transactions, connection failures and reconnects, schemas and lock.conn_id. Each test runs
on both servers."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from flamingock_provider.core.lease import Fence
from flamingock_provider.core.model import (
    Action,
    AuditConfig,
    AuditEntry,
    LockConfig,
    State,
    TargetConfig,
)
from flamingock_provider.core.workspace import open_lease_backend, open_store
from flamingock_provider.exceptions import ConfigurationError, StoreError
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
