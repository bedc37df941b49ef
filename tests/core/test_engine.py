"""The engine through the Python command API, on real SQLite targets and the embedded store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flamingock_provider import commands
from flamingock_provider.exceptions import PipelineValidationError, UsageError
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def states(pipeline: Path, change: str | None = None) -> list[tuple[str, str, str]]:
    doc = commands.history(pipeline, change)
    return [(e["change_id"], e["state"], e["tx_strategy"]) for e in doc["entries"]]


def latest_states(pipeline: Path) -> dict[str, str | None]:
    return {c["id"]: c["state"] for c in commands.status(pipeline)["changes"]}


@pytest.fixture
def pipe(tmp_path: Path, sqlite_target: Path) -> Path:
    return tmp_path / "shop"


def make(pipe: Path, files: dict[str, str], pipeline_yaml: str = WAREHOUSE_PIPELINE) -> Path:
    return write_tree(pipe, {"pipeline.yaml": pipeline_yaml, **files})


def test_apply_all_then_nothing_to_do(pipe: Path, sqlite_target: Path) -> None:
    make(
        pipe,
        {
            "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
            "01_schema/0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT); INSERT INTO b VALUES (1)", "DROP TABLE b"),
        },
    )
    first = commands.apply(pipe)
    assert first["applied"] == ["a", "b"] and first["failed"] is None and first["blocked"] is None
    assert {"a", "b"} <= tables(sqlite_target)
    assert states(pipe, "a") == [("a", "STARTED", "TX_SEPARATE"), ("a", "APPLIED", "TX_SEPARATE")]
    second = commands.apply(pipe)
    assert second["applied"] == [] and second["skipped"] == ["a", "b"]
    assert len(commands.history(pipe)["entries"]) == 4
    assert commands.status(pipe)["lock"] is None


def test_audit_entry_has_every_spec_field(pipe: Path) -> None:
    make(
        pipe,
        {"0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)")},
        WAREHOUSE_PIPELINE + "metadata: {team: core}\n",
    )
    commands.apply(pipe)
    entry = commands.history(pipe)["entries"][-1]
    for field in (
        "pipeline",
        "stage",
        "change_id",
        "author",
        "state",
        "action",
        "created_at",
        "execution_id",
        "dag_id",
        "run_id",
        "task_id",
        "try_number",
        "triggered_by",
        "hostname",
        "change_order",
        "change_type",
        "source_file",
        "checksum",
        "target",
        "transactional",
        "tx_strategy",
        "recovery",
        "execution_ms",
        "error",
        "lock_token",
        "metadata",
    ):
        assert field in entry, field
    assert entry["stage"] == "main" and entry["source_file"] == "0001_a.yaml" and entry["change_type"] == "sql"
    assert entry["metadata"] == {"team": "core"} and entry["lock_token"] >= 1 and entry["target"] == "warehouse"
    assert entry["created_at"].endswith("+00:00")


def test_transactional_failure_leaves_nothing_and_retries_after_fix(pipe: Path, sqlite_target: Path) -> None:
    make(
        pipe,
        {
            "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)"),
            "0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT); INSERT INTO nope VALUES (1)"),
            "0003_c.yaml": sql_unit("c", "CREATE TABLE c (x INT)"),
        },
    )
    result = commands.apply(pipe)
    assert result["applied"] == ["a"] and result["failed"]["id"] == "b" and "nope" in result["failed"]["error"]
    assert "b" not in tables(sqlite_target) and "c" not in tables(sqlite_target)
    failed = commands.history(pipe, "b")["entries"][-1]
    assert failed["state"] == "FAILED" and failed["error"]["type"] == "OperationalError"
    assert latest_states(pipe) == {"a": "APPLIED", "b": "FAILED", "c": None}
    (pipe / "0002_b.yaml").write_text(sql_unit("b", "CREATE TABLE b (x INT)"))
    again = commands.apply(pipe)
    assert again["applied"] == ["b", "c"] and again["skipped"] == ["a"]


def test_non_transactional_failure_rolls_back_the_unit(pipe: Path, sqlite_target: Path) -> None:
    make(
        pipe,
        {
            "0001_a.yaml": sql_unit(
                "a",
                "CREATE TABLE a (x INT); INSERT INTO nope VALUES (1)",
                "DROP TABLE a",
                transactional="false",
            )
        },
    )
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "a" and result["compensated"] == ["a"]
    assert [s for _, s, _ in states(pipe)] == ["STARTED", "FAILED", "ROLLED_BACK"]
    assert "a" not in tables(sqlite_target)
    assert commands.plan(pipe)["changes"][0]["action"] == "apply"


def test_rollback_failure_blocks_the_next_run_with_the_fix_command(pipe: Path) -> None:
    make(
        pipe,
        {"0001_a.yaml": sql_unit("a", "INSERT INTO nope VALUES (1)", "DROP TABLE nope", transactional="false")},
    )
    commands.apply(pipe)
    assert [s for _, s, _ in states(pipe)] == ["STARTED", "FAILED", "ROLLBACK_FAILED"]
    blocked = commands.apply(pipe)["blocked"]
    assert blocked["id"] == "a" and blocked["state"] == "ROLLBACK_FAILED"
    assert blocked["fix"] == f"flamingock fix {pipe} a --as rolled-back"
    commands.fix(pipe, "a", "rolled-back")
    assert commands.plan(pipe)["changes"][0]["action"] == "apply"


@pytest.mark.parametrize(
    ("scope", "rolled"), [("rollback_failed", []), ("rollback_stage", ["b"]), ("rollback_run", ["b", "a"])]
)
def test_on_failure_scopes(pipe: Path, sqlite_target: Path, scope: str, rolled: list[str]) -> None:
    make(
        pipe,
        {
            "01_one/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
            "02_two/0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)", "DROP TABLE b"),
            "02_two/0003_c.yaml": sql_unit("c", "INSERT INTO nope VALUES (1)", "SELECT 1"),
        },
        WAREHOUSE_PIPELINE + f"on_failure: {scope}\n",
    )
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "c"
    assert result["compensated"] == rolled  # c was transactional: nothing of it to undo
    assert {"a", "b"} - set(rolled) <= tables(sqlite_target)
    assert not set(rolled) & tables(sqlite_target)


def test_failing_step_rolls_back_earlier_steps_in_reverse(pipe: Path, sqlite_target: Path) -> None:
    unit = """id: steps
author: t
template: sql
transactional: false
steps:
  - apply: {statements: CREATE TABLE s1 (x INT)}
    rollback: {statements: DROP TABLE s1}
  - apply: {statements: CREATE TABLE s2 (x INT)}
    rollback: {statements: DROP TABLE s2}
  - apply: {statements: INSERT INTO nope VALUES (1)}
    rollback: {statements: DROP TABLE never_created}
"""
    make(pipe, {"0001_steps.yaml": unit})
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "steps" and result["compensated"] == ["steps"]
    assert not {"s1", "s2"} & tables(sqlite_target)


def test_blocked_unit_stops_its_stage_before_anything_in_it_runs(pipe: Path, sqlite_target: Path) -> None:
    make(
        pipe,
        {
            "01_one/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)"),
            "02_two/0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)"),
            "02_two/0003_c.yaml": sql_unit("c", "CREATE TABLE c (x INT)"),
        },
    )
    commands.apply(pipe, until="a")
    commands.apply(pipe)
    (pipe / "02_two/0003_c.yaml").write_text(sql_unit("c", "CREATE TABLE c (y INT)"))
    (pipe / "02_two/0004_d.yaml").write_text(sql_unit("d", "CREATE TABLE d (x INT)"))
    (pipe / "02_two/0002_b.yaml").write_text(sql_unit("b", "CREATE TABLE b (x INT)"))
    result = commands.apply(pipe)
    assert result["blocked"]["id"] == "c" and "drift" in result["blocked"]["reason"]
    assert result["blocked"]["fix"].endswith("c --as applied --accept-checksum")
    assert "d" not in tables(sqlite_target)
    with pytest.raises(UsageError, match="accept-checksum"):
        commands.fix(pipe, "c", "applied")
    commands.fix(pipe, "c", "applied", accept_checksum=True)
    assert commands.apply(pipe)["applied"] == ["d"]


def test_until_run_always_and_when(pipe: Path, sqlite_target: Path) -> None:
    make(
        pipe,
        {
            "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)"),
            "0002_b.yaml": sql_unit(
                "b", "CREATE TABLE IF NOT EXISTS b (x INT); INSERT INTO b VALUES (1)", run_always="true"
            ),
            "0003_c.yaml": sql_unit("c", "CREATE TABLE c (x INT)", when="\"{{ params.get('env') == 'prod' }}\""),
        },
    )
    assert commands.apply(pipe, until="a")["applied"] == ["a"]
    second = commands.apply(pipe)
    assert second["applied"] == ["b"] and second["skipped"] == ["a", "c"]
    assert latest_states(pipe)["c"] is None  # skipped by `when`: not audited
    assert commands.apply(pipe, params={"env": "prod"})["applied"] == ["b", "c"]
    with sqlite3.connect(sqlite_target) as conn:
        assert conn.execute("SELECT COUNT(*) FROM b").fetchone() == (2,)


def test_undo_to_and_last(pipe: Path, sqlite_target: Path) -> None:
    make(
        pipe,
        {
            f"000{i}_{n}.yaml": sql_unit(n, f"CREATE TABLE {n} (x INT)", f"DROP TABLE {n}")
            for i, n in enumerate("abcd", 1)
        },
    )
    commands.apply(pipe)
    assert commands.undo(pipe, to="b")["rolled_back"] == ["d", "c"]
    assert {"a", "b"} <= tables(sqlite_target) and not {"c", "d"} & tables(sqlite_target)
    assert commands.undo(pipe, last=1)["rolled_back"] == ["b"]
    undone = commands.history(pipe, "b")["entries"][-1]
    assert undone["state"] == "ROLLED_BACK" and undone["action"] == "undo"
    assert commands.apply(pipe)["applied"] == ["b", "c", "d"]


def test_undo_refuses_before_changing_anything_when_a_unit_has_no_rollback(pipe: Path, sqlite_target: Path) -> None:
    make(
        pipe,
        {
            "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
            "0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)"),
            "0003_c.yaml": sql_unit("c", "CREATE TABLE c (x INT)", "DROP TABLE c"),
        },
    )
    commands.apply(pipe)
    with pytest.raises(UsageError, match="'b'.*no rollback"):
        commands.undo(pipe, to="a")
    assert {"a", "b", "c"} <= tables(sqlite_target)
    with pytest.raises(UsageError, match="did you mean 'c'"):
        commands.undo(pipe, to="cc")


def test_invalid_pipeline_applies_nothing(pipe: Path, sqlite_target: Path) -> None:
    make(
        pipe,
        {
            "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)"),
            "0002_b.yaml": "id: b\nauthor: t\ntemplate: sql\napply: {statements: x}\ntypo: 1\n",
        },
    )
    with pytest.raises(PipelineValidationError) as err:
        commands.apply(pipe)
    assert "0002_b.yaml" in str(err.value)
    assert "a" not in tables(sqlite_target)


def test_python_unit_gets_a_context_and_the_engine_commits(pipe: Path, sqlite_target: Path) -> None:
    make(
        pipe,
        {
            "0001_t.yaml": sql_unit("t", "CREATE TABLE t (x INT)"),
            "0002_fill.py": (
                "ID = 'fill'\nAUTHOR = 'bob'\nTARGET = 'warehouse'\n"
                "def apply(ctx):\n"
                "    assert ctx.change.id == 'fill' and ctx.session is None and ctx.run_id is None\n"
                "    ctx.target.cursor().execute('INSERT INTO t VALUES (42)')\n"
                "def rollback(ctx):\n    ctx.target.cursor().execute('DELETE FROM t')\n"
            ),
        },
    )
    assert commands.apply(pipe)["applied"] == ["t", "fill"]
    with sqlite3.connect(sqlite_target) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]
    assert commands.undo(pipe, last=1)["rolled_back"] == ["fill"]
    with sqlite3.connect(sqlite_target) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)


def test_editing_a_payload_file_is_drift(pipe: Path) -> None:
    make(
        pipe,
        {
            "files/t.sql": "CREATE TABLE t (x INT);\n",
            "0001_t.yaml": "id: t\nauthor: a\ntemplate: sql\napply: {file: files/t.sql}\n",
        },
    )
    commands.apply(pipe)
    (pipe / "files/t.sql").write_text("CREATE TABLE t (x BIGINT);\n")
    blocked = commands.apply(pipe)["blocked"]
    assert blocked["id"] == "t" and "drift" in blocked["reason"]
    commands.fix(pipe, "t", "applied", accept_checksum=True)
    assert commands.apply(pipe)["skipped"] == ["t"]
