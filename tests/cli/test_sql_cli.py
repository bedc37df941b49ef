"""The ``flamingock`` CLI end to end on PostgreSQL and MariaDB: audit store and targets in real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import VENV_BIN, sql_unit, write_tree
from tests.fixtures.sql_databases import SqlDatabase

PIPELINE = (
    "audit: {conn_id: warehouse_db}\ntargets:\n  warehouse: {conn_id: warehouse_db}\n"
    "lock: {lease_seconds: 2, poke_interval_seconds: 0.1, wait_timeout_seconds: 60}\n"
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "flamingock"), *args], capture_output=True, text=True, env=os.environ.copy(), timeout=180
    )


@pytest.fixture
def db(sql_database: SqlDatabase, monkeypatch: pytest.MonkeyPatch) -> SqlDatabase:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", sql_database.uri)
    return sql_database


def test_apply_status_history_and_undo_through_the_cli(db: SqlDatabase, tmp_path: Path) -> None:
    pipe = write_tree(
        tmp_path / "shop",
        {
            "pipeline.yaml": PIPELINE,
            "01_schema/0001_items.yaml": sql_unit("items", "CREATE TABLE items (id INT)", "DROP TABLE items"),
            "02_data/0002_seed.yaml": sql_unit("seed", "INSERT INTO items VALUES (1)", "DELETE FROM items"),
        },
    )
    applied = cli("apply", str(pipe), "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["applied"] == ["items", "seed"]
    status = json.loads(cli("status", str(pipe), "--json").stdout)
    assert [c["state"] for c in status["changes"]] == ["APPLIED", "APPLIED"] and status["lock"] is None
    history = json.loads(cli("history", str(pipe), "--json").stdout)["entries"]
    assert len(history) == 4
    undone = cli("undo", str(pipe), "--last", "2", "--json")
    assert undone.returncode == 0, undone.stderr
    assert json.loads(undone.stdout)["rolled_back"] == ["seed", "items"]
    assert db.rows("SELECT count(*) FROM flamingock_audit_log WHERE state = 'ROLLED_BACK'") == [(2,)]


def test_unreachable_audit_store_fails_clearly_and_applies_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", "postgres://flam@127.0.0.1:9/nowhere")
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": PIPELINE, "0001_a.yaml": sql_unit("a", "SELECT 1")})
    proc = cli("apply", str(pipe))
    assert proc.returncode == 1
    assert proc.stderr.startswith("FAILED: cannot reach audit store 'warehouse_db' (postgres at 127.0.0.1:9): ")
    assert proc.stderr.rstrip().endswith("; check the connection")


def test_wrong_credentials_fail_clearly_and_leave_no_lease(db: SqlDatabase, tmp_path: Path) -> None:
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": PIPELINE, "0001_a.yaml": sql_unit("a", "SELECT 1")})
    assert cli("apply", str(pipe)).returncode == 0  # creates the tables; the lease is released
    bad = db.uri.replace(f"//{db.server.user}@", "//nobody:wrong@")
    env = {**os.environ, "AIRFLOW_CONN_WAREHOUSE_DB": bad}
    proc = subprocess.run(
        [str(VENV_BIN / "flamingock"), "apply", str(pipe)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 1 and "FAILED: cannot reach audit store 'warehouse_db'" in proc.stderr
    assert db.rows("SELECT count(*) FROM flamingock_lock WHERE owner IS NOT NULL") == [(0,)]


def killer(flag: Path) -> str:
    """A Python unit that changes the schema and a table, then SIGKILLs its own process mid-unit."""
    return textwrap.dedent(f"""
        import os, signal
        ID = "killer"
        AUTHOR = "t"
        TARGET = "warehouse"

        def apply(ctx):
            cur = ctx.target.cursor()
            cur.execute("CREATE TABLE made_by_killer (x INT)")
            cur.execute("INSERT INTO ledger VALUES ('killer')")
            if os.path.exists({str(flag)!r}):
                os.remove({str(flag)!r})
                os.kill(os.getpid(), signal.SIGKILL)
    """)


def test_sigkill_inside_a_tx_shared_unit_leaves_no_trace(db: SqlDatabase, tmp_path: Path) -> None:
    if db.kind != "postgres":
        pytest.skip("TX_SHARED with DDL is PostgreSQL (MySQL commits DDL implicitly)")
    flag = tmp_path / "flag"
    flag.write_text("armed")
    pipe = write_tree(
        tmp_path / "shop",
        {
            "pipeline.yaml": PIPELINE,
            "0001_ledger.yaml": sql_unit("ledger", "CREATE TABLE ledger (unit VARCHAR(20))"),
            "0002_killer.py": killer(flag),
        },
    )
    assert cli("apply", str(pipe)).returncode == -signal.SIGKILL
    assert db.rows("SELECT change_id, state FROM flamingock_audit_log ORDER BY seq") == [
        ("ledger", "STARTED"),
        ("ledger", "APPLIED"),
    ]  # no STARTED of the killed unit: it was in the rolled-back transaction
    assert db.rows("SELECT count(*) FROM ledger") == [(0,)]
    assert db.rows("SELECT count(*) FROM pg_tables WHERE tablename = 'made_by_killer'") == [(0,)]
    again = cli("apply", str(pipe), "--json")  # waits out the dead runner's 2 s lease, then applies once
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["applied"] == ["killer"]
    assert db.rows("SELECT unit FROM ledger") == [("killer",)]


def test_unlock_force_frees_a_live_lease(db: SqlDatabase, tmp_path: Path) -> None:
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": PIPELINE, "0001_a.yaml": sql_unit("a", "SELECT 1")})
    store = db.open_store("warehouse_db")
    held = store.acquire("shop", "somebody", 300)
    assert held is not None
    pid = held.extra["backend_pid"]
    assert cli("unlock", str(pipe)).returncode == 1  # live lease: needs --force
    forced = cli("unlock", str(pipe), "--force")
    assert forced.returncode == 0, forced.stderr
    # --force also ended the holder's connection (and any transaction it had open)
    sessions = "pg_stat_activity WHERE pid" if db.kind == "postgres" else "information_schema.PROCESSLIST WHERE ID"
    assert db.rows(f"SELECT count(*) FROM {sessions} = {pid}") == [(0,)]
    assert store.current("shop") is None  # the store reconnects
    store.close()
