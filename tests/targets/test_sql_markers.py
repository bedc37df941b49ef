"""The TX_SEPARATE marker table (SPEC §8) on real SQLite, PostgreSQL and MariaDB targets.

A marker row exists only between the target's commit and the APPLIED entry: a crash there leaves it,
and the next run records APPLIED from it, then deletes it. On PostgreSQL the table lives in the
``flamingock`` schema (created if missing), never in the user's search_path; ``markers_table:`` names it.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from flamingock_provider.exceptions import PipelineValidationError
from tests.conftest import sql_unit, write_tree
from tests.fixtures.airflow_env import REPO
from tests.fixtures.sql_databases import SqlDatabase

FAST = "lock: {lease_seconds: 2, poke_interval_seconds: 0.05, wait_timeout_seconds: 30}\n"
SEED = {"0001_seed.yaml": sql_unit("seed", "INSERT INTO items VALUES (1)", "DELETE FROM items")}
# Runs `commands.apply` in a child process that dies (SIGKILL) right after the target's commit.
CRASH = """\
import os, signal, sys
from flamingock_provider import commands
from flamingock_provider.targets.sql import DbApiTargetSession

original = DbApiTargetSession.commit

def commit(self):
    original(self)
    os.kill(os.getpid(), signal.SIGKILL)

DbApiTargetSession.commit = commit
commands.apply(sys.argv[1])
"""


def pipeline(root: Path, target: str = "{conn_id: warehouse_db}") -> Path:
    return write_tree(root, {"pipeline.yaml": f"targets:\n  warehouse: {target}\n" + FAST, **SEED})


def trail(pipe: Path) -> list[tuple[str, str]]:
    return [(e["change_id"], e["state"]) for e in commands.history(pipe)["entries"]]


def crash_after_commit(pipe: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CRASH, str(pipe)], cwd=REPO, timeout=120)
    assert done.returncode == -9
    assert trail(pipe) == [("seed", "STARTED")]
    commands.unlock(pipe, force=True)  # the dead runner's lease


def recover(pipe: Path) -> None:
    result = commands.apply(pipe)
    assert result["applied"] == [] and result["skipped"] == ["seed"], result  # recorded, never applied twice
    assert trail(pipe)[-1] == ("seed", "APPLIED")


@pytest.fixture
def db(sql_database: SqlDatabase, monkeypatch: pytest.MonkeyPatch) -> SqlDatabase:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", sql_database.uri)
    sql_database.connect().cursor().execute("CREATE TABLE items (id INT)")
    return sql_database


@pytest.mark.slow  # a child process killed after its commit
def test_on_sqlite_the_marker_bridges_a_crash_after_commit_and_is_deleted_once_applied(
    tmp_path: Path, sqlite_target: Path
) -> None:
    with sqlite3.connect(sqlite_target) as conn:
        conn.execute("CREATE TABLE items (id INT)")

    def rows(sql: str) -> list[Any]:
        with sqlite3.connect(sqlite_target) as conn:
            return conn.execute(sql).fetchall()

    pipe = pipeline(tmp_path / "p")
    crash_after_commit(pipe)
    assert rows("SELECT pipeline, change_id FROM flamingock_markers") == [("p", "seed")]
    recover(pipe)
    assert rows("SELECT * FROM flamingock_markers") == [] and rows("SELECT id FROM items") == [(1,)]
    assert commands.undo(pipe, last=1)["rolled_back"] == ["seed"]
    assert rows("SELECT * FROM flamingock_markers") == []


@pytest.mark.slow  # a child process killed after its commit
def test_on_postgres_and_mariadb_the_marker_is_gone_once_applied_and_postgres_keeps_it_in_its_own_schema(
    db: SqlDatabase, tmp_path: Path
) -> None:
    table = "flamingock.flamingock_markers" if db.kind == "postgres" else "flamingock_markers"
    pipe = pipeline(tmp_path / "p")
    crash_after_commit(pipe)
    assert db.rows(f"SELECT pipeline, change_id FROM {table}") == [("p", "seed")]
    if db.kind == "postgres":  # not in the user's search_path
        assert db.rows(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'flamingock_markers'"
        ) == [("flamingock",)]
    recover(pipe)
    assert db.rows(f"SELECT * FROM {table}") == [] and db.rows("SELECT id FROM items") == [(1,)]

    again = pipeline(tmp_path / "q")
    assert commands.apply(again)["applied"] == ["seed"]  # no crash: written and deleted in one apply
    assert db.rows(f"SELECT * FROM {table}") == []


@pytest.mark.slow  # a child process killed after its commit
def test_markers_table_names_the_table(db: SqlDatabase, tmp_path: Path) -> None:
    pipe = pipeline(tmp_path / "p", "{conn_id: warehouse_db, markers_table: ops_markers}")
    crash_after_commit(pipe)
    table = "flamingock.ops_markers" if db.kind == "postgres" else "ops_markers"
    assert db.rows(f"SELECT change_id FROM {table}") == [("seed",)]
    recover(pipe)
    assert db.rows(f"SELECT * FROM {table}") == []


def test_a_markers_table_that_is_no_table_name_is_refused_at_parse_time(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = pipeline(tmp_path / "p", "{conn_id: warehouse_db, markers_table: 'm; DROP TABLE x'}")
    with pytest.raises(PipelineValidationError, match=r"targets\.warehouse\.markers_table.*not a table name"):
        commands.plan(pipe)
