"""The ``sql`` template and Python units on real PostgreSQL and MariaDB targets (SPEC §4, §5, §8)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from flamingock_provider.exceptions import ConfigurationError, PipelineValidationError
from tests.conftest import sql_unit, write_tree
from tests.fixtures.sql_databases import SqlDatabase

SHARED = "audit: {conn_id: warehouse_db}\ntargets:\n  warehouse: {conn_id: warehouse_db}\n"
SEPARATE = "targets:\n  warehouse: {conn_id: warehouse_db}\n"  # audit: the embedded store
FAST = "lock: {lease_seconds: 5, poke_interval_seconds: 0.05, wait_timeout_seconds: 30}\n"


@pytest.fixture
def db(sql_database: SqlDatabase, monkeypatch: pytest.MonkeyPatch) -> SqlDatabase:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", sql_database.uri)
    return sql_database


def pipeline(root: Path, header: str, units: dict[str, str]) -> Path:
    return write_tree(root, {"pipeline.yaml": header + FAST, **units})


def strategies(pipe: Path) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for e in commands.history(pipe)["entries"]:
        out.setdefault(e["change_id"], []).append((e["state"], e.get("tx_strategy")))
    return out


def full_history(pipe: Path) -> list[Any]:
    from flamingock_provider.commands import workspace

    with workspace(pipe) as ws:
        return list(ws.store.history(ws.pipeline.id))


def block_unit(unit_id: str, statements: str, **extra: str) -> str:
    """YAML of a ``sql`` unit whose statements are a multi-line block."""
    body = textwrap.indent(statements.strip(), "    ")
    lines = [f"id: {unit_id}", "author: t", "template: sql", "apply:", "  statements: |", body]
    return "\n".join(lines + [f"{k}: {v}" for k, v in extra.items()]) + "\n"


def tables(db: SqlDatabase) -> set[str]:
    if db.kind == "postgres":
        rows = db.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    else:
        rows = db.rows("SHOW TABLES")
    return {r[0] for r in rows}


def test_units_on_the_audit_connection_share_its_transaction(db: SqlDatabase, tmp_path: Path) -> None:
    pipe = pipeline(
        tmp_path / "p",
        SHARED,
        {
            "0001_ddl.yaml": sql_unit("ddl", "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20))"),
            "0002_dml.yaml": sql_unit("dml", "INSERT INTO items VALUES (1, 'a'); INSERT INTO items VALUES (2, 'b')"),
        },
    )
    assert commands.apply(pipe)["applied"] == ["ddl", "dml"]
    by_unit = {e.change_id: {x.tx_strategy.value for x in full_history(pipe) if x.change_id == e.change_id}
               for e in full_history(pipe)}  # fmt: skip
    # PostgreSQL's DDL is transactional; MySQL/MariaDB commit DDL implicitly: NON_TX, never claimed atomic.
    assert by_unit["ddl"] == {"TX_SHARED" if db.kind == "postgres" else "NON_TX"}
    assert by_unit["dml"] == {"TX_SHARED"}
    assert db.rows("SELECT id, name FROM items ORDER BY id") == [(1, "a"), (2, "b")]
    assert commands.apply(pipe)["skipped"] == ["ddl", "dml"]


def test_other_audit_store_means_tx_separate_with_a_marker(db: SqlDatabase, tmp_path: Path) -> None:
    db.connect().cursor().execute("CREATE TABLE items (id INT)")
    pipe = pipeline(tmp_path / "p", SEPARATE, {"0001_dml.yaml": sql_unit("dml", "INSERT INTO items VALUES (1)")})
    assert commands.apply(pipe)["applied"] == ["dml"]
    assert {e.tx_strategy.value for e in full_history(pipe)} == {"TX_SEPARATE"}
    table = "flamingock.flamingock_markers" if db.kind == "postgres" else "flamingock_markers"
    assert db.rows(f"SELECT pipeline, change_id FROM {table}") == []  # deleted once APPLIED was recorded


def test_a_failing_statement_rolls_the_whole_unit_back_on_postgres(db: SqlDatabase, tmp_path: Path) -> None:
    if db.kind != "postgres":
        pytest.skip("MySQL commits DDL implicitly: a partial unit cannot be rolled back there")
    pipe = pipeline(
        tmp_path / "p",
        SHARED,
        {"0001_bad.yaml": sql_unit("bad", "CREATE TABLE made (x INT); INSERT INTO missing_table VALUES (1)")},
    )
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "bad"
    error = result["failed"]["error"]
    assert "INSERT INTO missing_table VALUES (1)" in error and 'relation "missing_table" does not exist' in error
    assert "made" not in tables(db)  # the CREATE TABLE rolled back with the failed INSERT
    assert [e.state.value for e in full_history(pipe)] == ["FAILED"]  # STARTED rolled back too
    assert commands.plan(pipe)["changes"][0]["action"] == "apply"


def test_python_unit_gets_a_dbapi_connection_and_the_provider_hook(db: SqlDatabase, tmp_path: Path) -> None:
    db.connect().cursor().execute("CREATE TABLE seen (hook VARCHAR(60), n INT)")
    unit = textwrap.dedent("""
        ID = "py"
        AUTHOR = "t"
        TARGET = "warehouse"

        def apply(ctx):
            cur = ctx.target.cursor()
            cur.execute("INSERT INTO seen VALUES (%s, %s)", (type(ctx.hook).__name__, 42))
    """)
    pipe = pipeline(tmp_path / "p", SHARED, {"0001_py.py": unit})
    assert commands.apply(pipe)["applied"] == ["py"]
    expected = "PostgresHook" if db.kind == "postgres" else "MySqlHook"
    assert db.rows("SELECT hook, n FROM seen") == [(expected, 42)]


def test_lock_timeout_fails_fast_naming_the_table_lock(db: SqlDatabase, tmp_path: Path) -> None:
    holder = db.connect()
    cur = holder.cursor()
    cur.execute("CREATE TABLE orders (id INT)")
    cur.execute("BEGIN" if db.kind == "postgres" else "START TRANSACTION")
    cur.execute("SELECT * FROM orders")  # a long-running reader holds a shared lock on the table
    cur.fetchall()
    header = "targets:\n  warehouse: {conn_id: warehouse_db, lock_timeout_seconds: 1}\n"
    pipe = pipeline(
        tmp_path / "p", header, {"0001_alter.yaml": sql_unit("alter", "ALTER TABLE orders ADD COLUMN note INT")}
    )
    try:
        result = commands.apply(pipe)
    finally:
        holder.rollback()
        holder.close()
    error = result["failed"]["error"]
    assert "lock on table orders" in error and "lock_timeout_seconds" in error and "waited more than 1 s" in error


def test_postgres_bodies_blocks_comments_and_strings(db: SqlDatabase, tmp_path: Path) -> None:
    if db.kind != "postgres":
        pytest.skip("dollar-quoted bodies and DO blocks are PostgreSQL")
    (tmp_path / "p" / "files").mkdir(parents=True)
    (tmp_path / "p" / "files" / "schema.sql").write_text(
        textwrap.dedent("""
            -- a comment; with a semicolon
            CREATE TABLE log (msg TEXT);
            CREATE FUNCTION note(m TEXT) RETURNS void AS $$
            BEGIN
              INSERT INTO log VALUES (m || '; from a function');  -- VACUUM; inside a body is not run here
            END;
            $$ LANGUAGE plpgsql;
            DO $body$ BEGIN PERFORM note('do; block'); END $body$;
            /* CREATE INDEX CONCURRENTLY in a comment */
            INSERT INTO log VALUES ('a;b ''quoted'' CREATE INDEX CONCURRENTLY x ON y (z)');
        """)
    )
    unit = "id: s\nauthor: t\ntemplate: sql\napply: {file: files/schema.sql}\n"
    pipe = pipeline(tmp_path / "p", SHARED, {"0001_s.yaml": unit})
    assert commands.validate(pipe)["ok"] is True
    assert commands.apply(pipe)["applied"] == ["s"]
    assert sorted(r[0] for r in db.rows("SELECT msg FROM log")) == [
        "a;b 'quoted' CREATE INDEX CONCURRENTLY x ON y (z)",
        "do; block; from a function",
    ]


def test_mysql_routines_without_delimiter(db: SqlDatabase, tmp_path: Path) -> None:
    if db.kind != "mariadb":
        pytest.skip("MySQL routine syntax")
    statements = textwrap.dedent("""
        CREATE TABLE counter (n INT);
        CREATE PROCEDURE bump(IN k INT)
        BEGIN
          DECLARE i INT DEFAULT 0;
          WHILE i < k DO
            INSERT INTO counter VALUES (i);  -- one row; per loop
            SET i = i + 1;
          END WHILE;
        END;
        CALL bump(3);
    """)
    pipe = pipeline(tmp_path / "p", SEPARATE, {"0001_proc.yaml": block_unit("proc", statements)})
    assert commands.apply(pipe)["applied"] == ["proc"]
    assert db.rows("SELECT count(*) FROM counter") == [(3,)]


def test_delimiter_lines_are_a_clear_validation_error(tmp_path: Path, sqlite_target: Path) -> None:
    statements = "DELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1; END //\nDELIMITER ;"
    pipe = pipeline(tmp_path / "p", SEPARATE, {"0001_proc.yaml": block_unit("proc", statements)})
    doc = commands.validate(pipe)
    [error] = doc["errors"]
    assert error["file"] == "0001_proc.yaml"
    assert "DELIMITER is a command of the mysql client" in error["message"] and "ending in 'END;'" in error["message"]


@pytest.mark.parametrize(
    "statement",
    ["CREATE INDEX CONCURRENTLY ix ON t (x)", "VACUUM t", "CREATE DATABASE other", "DROP INDEX CONCURRENTLY ix"],
)
def test_statements_that_cannot_run_in_a_transaction_need_transactional_false(
    tmp_path: Path, sqlite_target: Path, statement: str
) -> None:
    pipe = pipeline(tmp_path / "p", SEPARATE, {"0001_ix.yaml": sql_unit("ix", f"CREATE TABLE t (x INT); {statement}")})
    with pytest.raises(PipelineValidationError) as err:
        commands.apply(pipe)
    message = str(err.value)
    assert statement in message and "cannot run inside a transaction" in message
    assert "set 'transactional: false'" in message
    (pipe / "0001_ix.yaml").write_text(sql_unit("ix", statement, transactional="false"))
    assert commands.validate(pipe)["ok"] is True


def test_concurrently_runs_when_the_unit_is_not_transactional(db: SqlDatabase, tmp_path: Path) -> None:
    if db.kind != "postgres":
        pytest.skip("CREATE INDEX CONCURRENTLY is PostgreSQL")
    db.connect().cursor().execute("CREATE TABLE t (x INT)")
    unit = sql_unit("ix", "CREATE INDEX CONCURRENTLY ix ON t (x)", "DROP INDEX CONCURRENTLY ix", transactional="false")
    pipe = pipeline(tmp_path / "p", SHARED, {"0001_ix.yaml": unit})
    assert commands.apply(pipe)["applied"] == ["ix"]
    assert db.rows("SELECT indexname FROM pg_indexes WHERE tablename = 't'") == [("ix",)]
    assert {e.tx_strategy.value for e in full_history(pipe)} == {"NON_TX"}


def test_validate_says_which_units_run_non_tx_on_mysql(db: SqlDatabase, tmp_path: Path) -> None:
    pipe = pipeline(
        tmp_path / "p",
        SEPARATE,
        {
            "0001_ddl.yaml": sql_unit("ddl", "CREATE TABLE a (x INT)", "DROP TABLE a"),
            "0002_dml.yaml": sql_unit("dml", "INSERT INTO a VALUES (1)", "DELETE FROM a"),
        },
    )
    notes = [w for w in commands.validate(pipe)["warnings"] if "NON_TX" in w["message"]]
    if db.kind == "postgres":
        assert notes == []
    else:
        [note] = notes
        assert note["file"] == "0001_ddl.yaml" and "DDL commits implicitly" in note["message"]


def test_a_target_that_is_no_sql_database_lists_the_supported_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", "redis://127.0.0.1:9/0")
    pipe = pipeline(tmp_path / "p", SEPARATE, {"0001_a.yaml": sql_unit("a", "SELECT 1")})
    with pytest.raises(ConfigurationError, match="is not a SQL database; use a postgres, mysql or sqlite connection"):
        commands.apply(pipe)


def test_an_unreachable_target_is_a_clear_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", "postgres://flam@127.0.0.1:9/nowhere")
    pipe = pipeline(tmp_path / "p", SEPARATE, {"0001_a.yaml": sql_unit("a", "SELECT 1")})
    with pytest.raises(ConfigurationError, match=r"cannot reach target 'warehouse' \(postgres at 127.0.0.1:9\)"):
        commands.apply(pipe)


def test_the_warehouse_example_applies_on_postgres_with_its_audit_store_there(db: SqlDatabase, tmp_path: Path) -> None:
    if db.kind != "postgres":
        pytest.skip("the example's SQL (TEXT UNIQUE keys) is PostgreSQL/SQLite")
    import shutil

    from tests.conftest import REPO

    pipe = tmp_path / "warehouse"
    shutil.copytree(REPO / "dags" / "changes" / "warehouse", pipe)
    result = commands.apply(pipe)
    assert result["failed"] is None and len(result["applied"]) == 6, result
    assert {e.tx_strategy.value for e in full_history(pipe)} == {"TX_SHARED"}
    assert db.rows("SELECT order_id, total_cents FROM orders ORDER BY order_id") == [(100, 4448), (101, 7497)]
    assert db.rows("SELECT count(*) FROM flamingock_audit_log") == [(12,)]
    undone = commands.undo(pipe, last=6)
    assert undone["failed"] is None and len(undone["rolled_back"]) == 6, undone
    assert "products" not in tables(db)
