"""Every task's state says what it did (core/plan.py: ActionRule): undo per stage, newest first; a failed undo fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider import commands
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit
from tests.fixtures.airflow_dags import load_dag, make_pipeline, run_dag

pytestmark = pytest.mark.slow  # several dag.test() runs each

UNITS = {
    "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
    "02_data/0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)", "DROP TABLE b"),
    "03_late/0003_c.yaml": sql_unit("c", "CREATE TABLE c (x INT)", "DROP TABLE nope"),  # its rollback fails
    "04_last/0004_d.yaml": sql_unit("d", "CREATE TABLE d (x INT)", "DROP TABLE d"),
}


def latest(folder: Path) -> dict[str, str | None]:
    return {c["id"]: c["state"] for c in commands.status(folder)["changes"]}


@pytest.mark.parametrize("mode", ["task_per_unit", "task_per_stage"])
def test_an_undo_shows_per_stage_what_it_rolled_back_and_a_failed_rollback_fails_the_run(
    changes: Path, sqlite_target: Path, mode: str
) -> None:
    folder = make_pipeline(changes, f"undo{mode}", UNITS, WAREHOUSE_PIPELINE + f"run_mode: {mode}\n")
    dag = load_dag(f"flamingock_undo{mode}")
    assert run_dag(dag).state == "success"

    short = run_dag(dag, action="undo", undo_to="c")  # only d, in the newest stage
    assert short.state == "success", short.tasks
    assert short.states("undo", "undo_stages.last", "undo_stages.late", "undo_stages.data", "undo_stages.schema") == [
        "success",
        "success",
        "skipped",  # started after undo_stages.last (which might have failed) and found nothing to undo
        "skipped",
        "skipped",
    ]
    assert {"undo_stages.late", "undo_stages.data", "undo_stages.schema"} <= short.started
    assert short.states("complete", "release") == ["success", "success"]
    assert latest(folder)["d"] == "ROLLED_BACK"

    failed = run_dag(dag, action="undo", undo_to="a")  # c's rollback fails: b must stay applied
    assert failed.state == "failed", failed.tasks
    assert (
        failed.tasks["undo_stages.last"] == "skipped" and "undo_stages.last" not in failed.started
    )  # d: already undone
    assert failed.states("undo", "undo_stages.late", "undo_stages.data", "undo_stages.schema") == [
        "success",
        "failed",
        "upstream_failed",
        "upstream_failed",
    ]
    assert failed.states("complete", "release") == ["upstream_failed", "success"]
    assert latest(folder) == {"a": "APPLIED", "b": "APPLIED", "c": "ROLLBACK_FAILED", "d": "ROLLED_BACK"}
    assert commands.status(folder)["lock"] is None


def test_an_undo_with_nothing_to_undo_skips_every_undo_task_and_succeeds(changes: Path, sqlite_target: Path) -> None:
    make_pipeline(changes, "undonothing", UNITS)
    dag = load_dag("flamingock_undonothing")
    run = run_dag(dag, action="undo", undo_to="a")  # nothing applied yet
    assert run.state == "success", run.tasks
    undo_tasks = ["undo", "undo_stages.last", "undo_stages.late", "undo_stages.data", "undo_stages.schema"]
    assert run.states(*undo_tasks) == ["skipped"] * 5 and not set(undo_tasks) & run.started
    assert run.states("lock", "plan", "complete", "release") == ["success"] * 4
