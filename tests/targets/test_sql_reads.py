"""Bounded, read-only SQL reads (what plan impact and sql checks run) on a real SQLite database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flamingock_provider.exceptions import ReadTimeoutError
from flamingock_provider.targets.sql_reads import count, first_row

HANG = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"


def test_a_read_past_its_bound_is_interrupted_and_the_connection_still_works(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE t (x INT)")
    with pytest.raises(ReadTimeoutError, match="did not finish within 0.2 s"):
        first_row(conn, HANG, 0.2)
    conn.execute("INSERT INTO t VALUES (1)")  # query_only was switched off again, the handler removed
    assert count(conn, "SELECT count(*) FROM t", 5) == 1


def test_reads_can_never_write(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE t (x INT)")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        first_row(conn, "INSERT INTO t VALUES (1) RETURNING x", 5)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
