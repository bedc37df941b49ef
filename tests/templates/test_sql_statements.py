"""Splitting and reading top-level SQL statements (no server): what real migrations contain."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider import commands
from flamingock_provider.templates.sql_statements import (
    commits_implicitly,
    outside_transaction,
    split_statements,
    transaction_problems,
)
from tests.conftest import sql_unit, write_tree

PG_SCRIPT = """
-- header; with a semicolon
CREATE FUNCTION touch() RETURNS trigger AS $$
BEGIN
  NEW.updated := now();  -- VACUUM; here is not executed now
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DO $body$ BEGIN RAISE NOTICE 'CREATE INDEX CONCURRENTLY; in a string'; END $body$;
INSERT INTO notes VALUES ('a;b', 'it''s; quoted');
/* DROP DATABASE x; in a comment */
"""


def test_postgres_bodies_blocks_strings_and_comments_stay_whole() -> None:
    statements = split_statements(PG_SCRIPT)
    assert len(statements) == 3
    assert statements[0].startswith("-- header") and statements[0].endswith("LANGUAGE plpgsql")
    assert statements[1].startswith("DO $body$") and statements[2].startswith("INSERT INTO notes")
    assert transaction_problems(statements) == []  # the same words in bodies, strings, comments do not count


def test_mysql_routine_without_delimiter_is_one_statement() -> None:
    script = "CREATE PROCEDURE p() BEGIN DECLARE i INT; IF i THEN SELECT 1; END IF; SELECT 2; END; CALL p();"
    assert split_statements(script) == [
        "CREATE PROCEDURE p() BEGIN DECLARE i INT; IF i THEN SELECT 1; END IF; SELECT 2; END",
        "CALL p()",
    ]


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ("create index concurrently ix on t (x)", "CREATE INDEX CONCURRENTLY"),
        ("CREATE UNIQUE INDEX CONCURRENTLY ix ON t (x)", "CREATE INDEX CONCURRENTLY"),
        ("/* why */ VACUUM ANALYZE t", "VACUUM"),
        ("REINDEX (VERBOSE) TABLE CONCURRENTLY t", "REINDEX CONCURRENTLY"),
        ("DROP DATABASE old", "CREATE / DROP DATABASE"),
        ("ALTER SYSTEM SET work_mem = '64MB'", "ALTER SYSTEM"),
        ("CREATE INDEX ix ON t (x)", None),
        ("SELECT 'VACUUM'", None),
        ("ALTER TYPE mood ADD VALUE 'meh'", None),  # PostgreSQL 12+: allowed in a transaction
    ],
)
def test_statements_that_cannot_run_in_a_transaction(statement: str, why: str | None) -> None:
    assert outside_transaction(statement) == why


def test_add_enum_value_counts_before_postgres_12() -> None:
    assert outside_transaction("ALTER TYPE mood ADD VALUE 'meh'", server_version=110000) is not None
    assert outside_transaction("ALTER TYPE mood ADD VALUE 'meh'", server_version=150000) is None


@pytest.mark.parametrize(
    ("statement", "implicit"),
    [
        ("CREATE TABLE t (x INT)", True),
        ("alter table t add column y int", True),
        ("TRUNCATE t", True),
        ("RENAME TABLE a TO b", True),
        ("CREATE TEMPORARY TABLE tmp (x INT)", False),
        ("INSERT INTO t VALUES ('CREATE TABLE')", False),
        ("UPDATE t SET x = 1", False),
    ],
)
def test_mysql_implicit_commits(statement: str, implicit: bool) -> None:
    assert commits_implicitly(statement) is implicit


def test_begin_and_commit_in_a_transactional_unit_are_refused() -> None:
    [problem] = transaction_problems(split_statements("BEGIN; INSERT INTO t VALUES (1); COMMIT"))[:1]
    assert "the engine begins and commits" in problem


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "must be a positive number of seconds"),
        ("'ten'", "must be a positive number of seconds"),
        ("100000", "more than a day"),
    ],
)
def test_lock_timeout_seconds_is_validated(tmp_path: Path, sqlite_target: Path, value: str, message: str) -> None:
    pipe = write_tree(
        tmp_path / "p",
        {
            "pipeline.yaml": f"targets:\n  warehouse: {{conn_id: warehouse_db, lock_timeout_seconds: {value}}}\n",
            "0001_a.yaml": sql_unit("a", "SELECT 1"),
        },
    )
    [error] = commands.validate(pipe)["errors"]
    assert "targets.warehouse.lock_timeout_seconds" in error["message"] and message in error["message"]
