"""Runs through real Airflow (dag.test on a migrated metadata DB): apply, failure, fix, plan, undo."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit
from tests.fixtures.airflow_dags import load_dag, make_pipeline, run_dag


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}


def history(folder: Path) -> list[tuple[str, str, str]]:
    return [(e["change_id"], e["state"], e["action"]) for e in commands.history(folder)["entries"]]


def latest(folder: Path) -> dict[str, str | None]:
    return {c["id"]: c["state"] for c in commands.status(folder)["changes"]}


def asset_events(uri: str) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == uri)
            .count()
        )


def plan_xcom(dag_id: str, run_id: str, key: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run_id)
        value = query.filter(XComModel.task_id == "plan", XComModel.key == key).one().value
    return json.loads(value) if isinstance(value, str) else value


UNITS = {
    "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
    "01_schema/0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)", "DROP TABLE b"),
    "02_data/0003_c.yaml": sql_unit("c", "INSERT INTO a VALUES (1)", "DELETE FROM a"),
}


def test_apply_everything_then_nothing_to_do(
    changes: Path, sqlite_target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flamingock_provider.stores.sqlite import SqliteStore

    folder = make_pipeline(changes, "runall", UNITS)
    dag = load_dag("flamingock_runall")
    reads: list[str] = []
    real_latest = SqliteStore.latest
    monkeypatch.setattr(
        SqliteStore, "latest", lambda self, pipeline: reads.append(pipeline) or real_latest(self, pipeline)
    )
    first = run_dag(dag)
    # The plan task's snapshot, then one per unit task, read under the lease it holds (SPEC §7).
    assert reads == ["runall"] * 4
    assert first.state == "success", first.tasks
    assert (
        first.states("lock", "plan", "schema.apply_a", "schema.apply_b", "data.apply_c", "complete", "release")
        == ["success"] * 7
    )
    assert first.states("schema.rollback", "data.rollback", "undo") == ["skipped"] * 3
    assert {"a", "b"} <= tables(sqlite_target) and latest(folder) == {"a": "APPLIED", "b": "APPLIED", "c": "APPLIED"}
    entry = commands.history(folder, "a")["entries"][-1]
    assert (
        entry["dag_id"] == "flamingock_runall"
        and entry["run_id"] == first.run_id
        and entry["task_id"] == "schema.apply_a"
    )
    assert entry["lock_token"] >= 1 and entry["triggered_by"].startswith("airflow:")
    assert len({e["execution_id"] for e in commands.history(folder)["entries"]}) == 1  # one execution per run
    assert asset_events("flamingock://runall/") == 1
    assert commands.status(folder)["lock"] is None  # released
    # The plan hands each stage's tasks the lock's token and the risk it analysed: one XCom read per task.
    pushed = plan_xcom("flamingock_runall", first.run_id, "decisions.schema")
    assert pushed["@lease_token"] == entry["lock_token"]
    assert {k: (v["action"], v["risk"]) for k, v in pushed.items() if k != "@lease_token"} == {
        "a": ("apply", "safe"),
        "b": ("apply", "safe"),
    }
    assert {e["risk"] for e in commands.history(folder)["entries"]} == {"safe"}

    reads.clear()
    second = run_dag(dag)
    assert reads == ["runall"]  # nothing to do: the plan's hint lets every unit task skip unread
    monkeypatch.setattr(SqliteStore, "latest", real_latest)
    assert second.state == "success"
    assert second.states("schema.apply_a", "schema.apply_b", "data.apply_c") == ["skipped"] * 3
    assert len(history(folder)) == 6  # nothing new audited
    assert asset_events("flamingock://runall/") == 2


def test_a_failure_compensates_fails_the_run_and_a_fixed_rerun_applies_the_rest(
    changes: Path, sqlite_target: Path
) -> None:
    units = {
        "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
        "02_data/0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)", "DROP TABLE b"),
        "02_data/0003_c.yaml": sql_unit("c", "CREATE TABLE c (x INT); INSERT INTO nope VALUES (1)", "DROP TABLE c"),
        "03_more/0004_d.yaml": sql_unit("d", "CREATE TABLE d (x INT)", "DROP TABLE d"),
    }
    folder = make_pipeline(changes, "runfail", units, WAREHOUSE_PIPELINE + "on_failure: rollback_stage\n")
    dag = load_dag("flamingock_runfail")
    failed = run_dag(dag)
    assert failed.state == "failed"  # even though compensation succeeded
    assert failed.tasks["data.apply_c"] == "failed" and failed.tasks["data.rollback"] == "success"
    assert failed.states("schema.rollback", "more.apply_d", "complete") == [
        "skipped",
        "upstream_failed",
        "upstream_failed",
    ]
    assert failed.tasks["release"] == "success" and commands.status(folder)["lock"] is None
    assert latest(folder) == {"a": "APPLIED", "b": "ROLLED_BACK", "c": "FAILED", "d": None}
    assert tables(sqlite_target) & {"a", "b", "c", "d"} == {"a"}
    assert asset_events("flamingock://runfail/") == 0

    (folder / "02_data" / "0003_c.yaml").write_text(sql_unit("c", "CREATE TABLE c (x INT)", "DROP TABLE c"))
    fixed = run_dag(load_dag("flamingock_runfail"))
    assert fixed.state == "success", fixed.tasks
    assert fixed.states("schema.apply_a", "data.apply_b", "data.apply_c", "more.apply_d") == [
        "skipped",
        "success",
        "success",
        "success",
    ]
    assert {"a", "b", "c", "d"} <= tables(sqlite_target)


def test_plan_changes_nothing_and_undo_rolls_back_newest_first(changes: Path, sqlite_target: Path) -> None:
    folder = make_pipeline(changes, "runundo", UNITS)
    dag = load_dag("flamingock_runundo")
    assert run_dag(dag).state == "success"
    entries = len(history(folder))
    events = asset_events("flamingock://runundo/")
    assert events == 1

    plan = run_dag(dag, action="plan")
    assert plan.state == "success" and plan.tasks["plan"] == "success" and plan.tasks["lock"] == "success"
    assert plan.states("schema.apply_a", "data.apply_c", "undo", "undo_stages.data") == ["skipped"] * 4
    assert plan.states("complete", "release") == ["success", "skipped"]  # no lease taken, none released
    assert len(history(folder)) == entries

    undo = run_dag(dag, action="undo", undo_to="a")
    assert undo.state == "success" and undo.states("undo", "undo_stages.data", "undo_stages.schema") == ["success"] * 3
    assert undo.states("schema.apply_a", "schema.apply_b", "schema.rollback") == ["skipped"] * 3
    assert undo.states("complete", "release") == ["success", "success"]
    assert asset_events("flamingock://runundo/") == events  # only an apply emits the asset
    rolled = [(cid, state) for cid, state, action in history(folder)[entries:] if action == "undo"]
    assert [cid for cid, state in rolled if state == "ROLLED_BACK"] == ["c", "b"]  # newest first
    assert latest(folder) == {"a": "APPLIED", "b": "ROLLED_BACK", "c": "ROLLED_BACK"}
    assert "b" not in tables(sqlite_target) and commands.status(folder)["lock"] is None


def test_undo_without_undo_to_fails_at_once(
    changes: Path, sqlite_target: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = make_pipeline(changes, "runnoto", UNITS)
    run = run_dag(load_dag("flamingock_runnoto"), action="undo")
    assert run.state == "failed" and run.tasks["lock"] == "failed"
    assert run.states("plan", "undo") == ["upstream_failed", "upstream_failed"]
    assert "action 'undo' needs param 'undo_to'" in capfd.readouterr().out
    assert history(folder) == [] and commands.status(folder)["lock"] is None


def test_when_conditions_and_jinja_payloads_use_the_run_params(changes: Path, sqlite_target: Path) -> None:
    units = {
        "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE {{ params.table }} (x INT)"),
        "01_schema/0002_prod.yaml": sql_unit(
            "prod", "CREATE TABLE prod (x INT)", when="\"{{ params.env == 'prod' }}\""
        ),
        "02_extra/stage.yaml": "when: \"{{ params.env == 'prod' }}\"\n",
        "02_extra/0003_e.yaml": sql_unit("e", "CREATE TABLE e (x INT)"),
        "03_after/0004_f.yaml": sql_unit("f", "CREATE TABLE f (x INT)"),
    }
    folder = make_pipeline(changes, "runwhen", units)
    run = run_dag(load_dag("flamingock_runwhen"), env="dev", table="from_params")
    assert run.state == "success", run.tasks
    assert run.states("schema.apply_a", "schema.apply_prod", "extra.apply_e", "after.apply_f") == [
        "success",
        "skipped",
        "skipped",
        "success",
    ]
    assert {"from_params", "f"} <= tables(sqlite_target) and not {"prod", "e"} & tables(sqlite_target)
    assert latest(folder) == {"a": "APPLIED", "prod": None, "e": None, "f": "APPLIED"}  # skipped: not audited


def test_task_per_stage_with_parallel_stages(changes: Path, sqlite_target: Path) -> None:
    units = {
        **UNITS,
        "02_data/stage.yaml": "depends_on: [schema]\n",
        "03_views/stage.yaml": "depends_on: [schema]\n",
        "03_views/0004_v.yaml": sql_unit("v", "CREATE VIEW v AS SELECT * FROM b", "DROP VIEW v"),
    }
    folder = make_pipeline(changes, "runstage", units, WAREHOUSE_PIPELINE + "run_mode: task_per_stage\n")
    run = run_dag(load_dag("flamingock_runstage"))
    assert run.state == "success", run.tasks
    assert run.states("schema.apply", "data.apply", "views.apply") == ["success"] * 3
    assert latest(folder) == {"a": "APPLIED", "b": "APPLIED", "c": "APPLIED", "v": "APPLIED"}


def test_a_clean_up_stage_runs_after_a_failure_and_a_blocked_unit_stops_its_stage(
    changes: Path, sqlite_target: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    units = {
        "01_schema/0001_a.yaml": sql_unit(
            "a", "CREATE TABLE a (x INT); INSERT INTO nope VALUES (1)", transactional="false"
        ),
        "02_cleanup/stage.yaml": "run_after_failure: true\n",
        "02_cleanup/0002_c.yaml": sql_unit("c", "CREATE TABLE cleaned (x INT)", run_always="true"),
        "03_more/0003_d.yaml": sql_unit("d", "CREATE TABLE d (x INT)"),
    }
    folder = make_pipeline(changes, "runcleanup", units)
    first = run_dag(load_dag("flamingock_runcleanup"))
    assert first.state == "failed"
    assert first.states("schema.apply_a", "schema.rollback", "cleanup.apply_c") == ["failed", "success", "success"]
    assert first.states("more.apply_d", "complete") == ["upstream_failed", "upstream_failed"]
    assert "cleaned" in tables(sqlite_target) and "d" not in tables(sqlite_target)
    assert latest(folder)["a"] == "FAILED"  # non-transactional, no rollback: needs a person
    capfd.readouterr()

    second = run_dag(load_dag("flamingock_runcleanup"))
    assert second.state == "failed" and second.tasks["schema.apply_a"] == "failed"
    out = capfd.readouterr().out
    assert "change 'a' is blocked (FAILED)" in out and "flamingock fix" in out and "--as rolled-back" in out
    assert [state for cid, state, _ in history(folder) if cid == "a"] == ["STARTED", "FAILED"]  # nothing new
