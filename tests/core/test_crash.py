"""Crashes and lost leases (SPEC §8, §9): a killed runner, resumed by the next run, never applies twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flamingock_provider import commands
from flamingock_provider.exceptions import LeaseLostError
from tests.conftest import VENV_BIN, sql_unit, write_tree

FAST_LEASE = "lock: {lease_seconds: 1, poke_interval_seconds: 0.05, wait_timeout_seconds: 30}\n"
TARGET = "targets:\n  warehouse: {conn_id: warehouse_db}\n"


def killer_unit(flag: Path, transactional: bool, recovery: str = "manual_intervention") -> str:
    """A Python unit that writes a row, then SIGKILLs its own process while the flag file exists."""
    return textwrap.dedent(f"""
        import os, signal
        ID = "killer"
        AUTHOR = "t"
        TARGET = "warehouse"
        TRANSACTIONAL = {transactional}
        RECOVERY = "{recovery}"

        def apply(ctx):
            ctx.target.cursor().execute("INSERT INTO ledger VALUES ('killer')")
            if not {transactional}:
                ctx.target.commit()
            if os.path.exists({str(flag)!r}):
                os.remove({str(flag)!r})
                os.kill(os.getpid(), signal.SIGKILL)

        def rollback(ctx):
            ctx.target.cursor().execute("DELETE FROM ledger WHERE unit = 'killer'")
    """)


def cli(pipe: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "flamingock"), *args, str(pipe)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )


def ledger(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT unit FROM ledger ORDER BY rowid")]


def crash_pipeline(
    root: Path, flag: Path, *, transactional: bool, recovery: str = "manual_intervention", audit: str = ""
) -> Path:
    flag.write_text("armed")
    return write_tree(
        root,
        {
            "pipeline.yaml": TARGET + FAST_LEASE + audit,
            "0001_ledger.yaml": sql_unit("ledger", "CREATE TABLE ledger (unit TEXT)"),
            "0002_killer.py": killer_unit(flag, transactional, recovery),
            "0003_after.yaml": sql_unit("after", "INSERT INTO ledger VALUES ('after')"),
        },
    )


def test_crash_after_started_of_non_tx_unit_blocks_with_fix_command(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = crash_pipeline(tmp_path / "p", tmp_path / "flag", transactional=False)
    assert cli(pipe, "apply").returncode == -signal.SIGKILL
    assert [c["state"] for c in commands.status(pipe)["changes"]] == ["APPLIED", "STARTED", None]
    result = commands.apply(pipe)  # waits out the dead runner's 1 s lease
    assert result["blocked"]["id"] == "killer" and result["blocked"]["state"] == "STARTED"
    assert result["blocked"]["fix"] == f"flamingock fix {pipe} killer --as rolled-back"
    assert ledger(sqlite_target) == ["killer"]
    commands.fix(pipe, "killer", "applied")
    assert commands.apply(pipe)["applied"] == ["after"]
    assert ledger(sqlite_target) == ["killer", "after"]


def test_crash_with_always_retry_reapplies(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = crash_pipeline(tmp_path / "p", tmp_path / "flag", transactional=True, recovery="always_retry")
    assert cli(pipe, "apply").returncode == -signal.SIGKILL
    assert commands.apply(pipe)["applied"] == ["killer", "after"]
    assert ledger(sqlite_target) == ["killer", "after"]  # the killed transaction never committed


def test_tx_separate_crash_before_commit_leaves_nothing_and_applies_next_time(
    tmp_path: Path, sqlite_target: Path
) -> None:
    pipe = crash_pipeline(tmp_path / "p", tmp_path / "flag", transactional=True)
    assert cli(pipe, "apply").returncode == -signal.SIGKILL
    started = commands.history(pipe, "killer")["entries"]
    assert [(e["state"], e["tx_strategy"]) for e in started] == [("STARTED", "TX_SEPARATE")]
    assert ledger(sqlite_target) == []
    commands.unlock(pipe, force=True)  # the dead runner's lease: until it expires its STARTED reads "running"
    assert commands.plan(pipe)["changes"][1]["action"] == "apply"  # no marker: nothing committed
    assert commands.apply(pipe)["applied"] == ["killer", "after"]
    assert ledger(sqlite_target) == ["killer", "after"]


CRASH_AFTER_COMMIT = """
import os, sys
from flamingock_provider.targets.sql import DbApiTargetSession
original = DbApiTargetSession.commit
def commit_then_die(self):
    original(self)
    os._exit(9)   # the change and its marker are committed; APPLIED is never written
DbApiTargetSession.commit = commit_then_die
from flamingock_provider.cli.main import main
sys.exit(main(["apply", sys.argv[1]]))
"""


def test_tx_separate_crash_after_commit_is_reconciled_from_the_marker(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = write_tree(
        tmp_path / "p",
        {
            "pipeline.yaml": TARGET + FAST_LEASE,
            "0001_t.yaml": sql_unit("t", "CREATE TABLE ledger (unit TEXT); INSERT INTO ledger VALUES ('t')"),
        },
    )
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_COMMIT, str(pipe)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert proc.returncode == 9, proc.stderr
    assert [e["state"] for e in commands.history(pipe)["entries"]] == ["STARTED"]
    commands.unlock(pipe, force=True)  # the dead runner's lease: until it expires its STARTED reads "running"
    plan = commands.plan(pipe)["changes"][0]
    assert plan["action"] == "skip" and "recorded APPLIED" in plan["reason"]
    result = commands.apply(pipe)
    assert result["applied"] == [] and result["skipped"] == ["t"]
    assert [e["state"] for e in commands.history(pipe)["entries"]] == ["STARTED", "APPLIED"]
    assert ledger(sqlite_target) == ["t"]


@pytest.fixture
def shared_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One SQLite file that is both the audit store and the target (TX_SHARED)."""
    db = tmp_path / "shared.db"
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_DB", f"sqlite:///{db}")
    return db


SHARED = "audit: {conn_id: shared_db}\ntargets:\n  main: {conn_id: shared_db}\n" + FAST_LEASE


def test_tx_shared_failure_leaves_no_change_and_no_started(tmp_path: Path, shared_db: Path) -> None:
    pipe = write_tree(
        tmp_path / "p",
        {
            "pipeline.yaml": SHARED,
            "0001_t.yaml": sql_unit("t", "CREATE TABLE t (x INT); INSERT INTO nope VALUES (1)"),
        },
    )
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "t"
    assert [(e["state"], e["tx_strategy"]) for e in commands.history(pipe)["entries"]] == [("FAILED", "TX_SHARED")]
    with sqlite3.connect(shared_db) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchall() == []
    (pipe / "0001_t.yaml").write_text(sql_unit("t", "CREATE TABLE t (x INT)"))
    assert commands.apply(pipe)["applied"] == ["t"]
    assert [e["state"] for e in commands.history(pipe)["entries"]] == ["FAILED", "STARTED", "APPLIED"]


def test_tx_shared_crash_leaves_no_trace(tmp_path: Path, shared_db: Path) -> None:
    flag = tmp_path / "flag"
    flag.write_text("armed")
    pipe = write_tree(
        tmp_path / "p",
        {
            "pipeline.yaml": SHARED.replace("main:", "warehouse:"),
            "0001_ledger.yaml": sql_unit("ledger", "CREATE TABLE ledger (unit TEXT)"),
            "0002_killer.py": killer_unit(flag, True),
        },
    )
    assert cli(pipe, "apply").returncode == -signal.SIGKILL
    assert [c["state"] for c in commands.status(pipe)["changes"]] == ["APPLIED", None]
    assert ledger(shared_db) == []
    assert commands.apply(pipe)["applied"] == ["killer"]
    assert ledger(shared_db) == ["killer"]


THIEF_UNIT = """
from flamingock_provider.core.paths import embedded_store_path
from flamingock_provider.stores.sqlite import SqliteStore
ID = "{uid}"
AUTHOR = "t"
TRANSACTIONAL = False

def apply(ctx):
    # Another runner takes the lease over while this unit runs (as after a long GC pause).
    store = SqliteStore(embedded_store_path())
    store.force_release(ctx.pipeline.id)
    assert store.acquire(ctx.pipeline.id, "cli/thief/1/x", 600) is not None
"""


def test_lost_lease_stops_the_run_before_the_next_unit(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = write_tree(
        tmp_path / "p",
        {
            "pipeline.yaml": TARGET + FAST_LEASE,
            "0001_stolen.py": THIEF_UNIT.format(uid="stolen"),
            "0002_next.yaml": sql_unit("next", "CREATE TABLE next (x INT)"),
        },
    )
    with pytest.raises(LeaseLostError, match="lease lost"):
        commands.apply(pipe)
    assert [e["state"] for e in commands.history(pipe)["entries"]] == ["STARTED"]  # no APPLIED, no FAILED
    assert commands.status(pipe)["lock"]["owner"] == "cli/thief/1/x"  # the loser released nothing
    with sqlite3.connect(sqlite_target) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'next'").fetchall() == []
    (pipe / "pipeline.yaml").write_text(
        TARGET + FAST_LEASE.replace("wait_timeout_seconds: 30", "wait_timeout_seconds: 1")
    )
    proc = cli(pipe, "apply")
    assert proc.returncode == 3  # the thief still holds it (waiting 1 s for it, not 30)


def test_cli_reports_lease_lost_with_exit_1(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = write_tree(tmp_path / "p", {"pipeline.yaml": TARGET + FAST_LEASE, "0001_s.py": THIEF_UNIT.format(uid="s")})
    proc = cli(pipe, "apply")
    assert proc.returncode == 1 and "lease lost" in proc.stderr and "Traceback" not in proc.stderr
