"""What only the embedded SQLite store does (the shared contract is in test_audit_contract.py and
test_lease_contract.py): latest() through its latest table, and a locked database as a StoreError."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flamingock_provider.core.model import State
from flamingock_provider.exceptions import StoreError
from flamingock_provider.stores.sqlite import SqliteStore
from tests.stores.conftest import entry


def test_latest_is_one_join_of_the_latest_table_with_the_log(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "audit.db")
    for i in range(50):
        store.append(entry(f"c{i}", State.STARTED))
        store.append(entry(f"c{i}", State.APPLIED))
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)
    assert len(store.latest("p")) == 50
    [sql] = statements
    assert '"flamingock_audit_log_latest"' in sql and "JOIN" in sql  # never a scan of the whole history
    rows = store._conn().execute('SELECT COUNT(*) FROM "flamingock_audit_log_latest"').fetchone()
    assert rows == (50,)  # one row per change, however many entries it has


def test_locked_database_becomes_a_store_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "audit.db", busy_timeout_s=0.2)
    blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            store.append(entry("c1"))
    finally:
        blocker.execute("ROLLBACK")
    store.append(entry("c1"))


def _open_and_append(path: str, start: object) -> str:
    start.wait()  # type: ignore[attr-defined]
    store = SqliteStore(Path(path))
    try:
        store.append(entry(State.APPLIED))
        return "ok"
    except StoreError as err:
        return str(err)
    finally:
        store.close()


def test_runners_opening_a_new_audit_file_at_once_all_get_in(tmp_path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(8) as pool:
            pending = [pool.apply_async(_open_and_append, (str(tmp_path / "audit.db"), start)) for _ in range(8)]
            start.set()
            results = [p.get(timeout=120) for p in pending]
    assert results == ["ok"] * 8
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
