"""The plan task skips what a run cannot do (SPEC §10): every task's state, and which ones a worker started.

``Run.started`` holds the tasks that a worker ran (they have a pid). A task the plan task skipped was
never started. The scheduler also skips a rollback task whose units all succeeded (``one_failed``)
without starting it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider import commands
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit
from tests.fixtures.airflow_dags import Run, load_dag, make_pipeline, run_dag

BOOKKEEPING = {"lock", "plan", "complete", "release"}
UNDO = {"undo", "undo_stages.schema", "undo_stages.data"}
UNITS = {
    "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
    "01_schema/0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)", "DROP TABLE b"),
    "02_data/0003_c.yaml": sql_unit("c", "INSERT INTO a VALUES (1)", "DELETE FROM a"),
}


def skipped_unstarted(run: Run) -> set[str]:
    return {task for task, state in run.tasks.items() if state == "skipped" and task not in run.started}


def latest(folder: Path) -> dict[str, str | None]:
    return {c["id"]: c["state"] for c in commands.status(folder)["changes"]}


def test_a_rerun_with_nothing_to_do_starts_only_the_bookkeeping_tasks(changes: Path, sqlite_target: Path) -> None:
    folder = make_pipeline(changes, "skipnoop", UNITS)
    dag = load_dag("flamingock_skipnoop")
    first = run_dag(dag)
    assert first.state == "success", first.tasks
    assert first.started == BOOKKEEPING | {"schema.apply_a", "schema.apply_b", "data.apply_c"}
    assert skipped_unstarted(first) == {"schema.rollback", "data.rollback", *UNDO}  # undo: by the plan task

    entries = len(commands.history(folder)["entries"])
    second = run_dag(dag)
    assert second.state == "success", second.tasks
    assert second.started == BOOKKEEPING
    assert second.states(*BOOKKEEPING) == ["success"] * 4
    assert skipped_unstarted(second) == set(second.tasks) - BOOKKEEPING  # every unit, rollback and undo
    assert len(commands.history(folder)["entries"]) == entries  # nothing audited


def test_a_partial_rerun_starts_the_new_units_and_the_idle_units_after_the_first(
    changes: Path, sqlite_target: Path
) -> None:
    folder = make_pipeline(changes, "skippart", UNITS)
    dag = load_dag("flamingock_skippart")
    assert run_dag(dag).state == "success"
    (folder / "03_late").mkdir()
    (folder / "03_late" / "0005_z.yaml").write_text(sql_unit("z", "CREATE TABLE z (x INT)", "DROP TABLE z"))
    appended = run_dag(load_dag("flamingock_skippart"))
    assert appended.state == "success", appended.tasks
    assert appended.started == BOOKKEEPING | {"late.apply_z"}  # z runs after two whole skipped stages
    assert skipped_unstarted(appended) == {
        "schema.apply_a",
        "schema.apply_b",
        "schema.rollback",
        "data.apply_c",
        "data.rollback",
        "late.rollback",  # by the scheduler: z succeeded
        *UNDO,
        "undo_stages.late",
    }

    (folder / "01_schema" / "0004_n.yaml").write_text(sql_unit("n", "CREATE TABLE n (x INT)", "DROP TABLE n"))
    middle = run_dag(load_dag("flamingock_skippart"))
    assert middle.state == "success", middle.tasks
    # c and z come after n, which might fail: their tasks start, find nothing to do, and skip themselves.
    assert middle.started == BOOKKEEPING | {"schema.apply_n", "data.apply_c", "late.apply_z"}
    assert middle.states("schema.apply_n", "data.apply_c", "late.apply_z") == ["success", "skipped", "skipped"]
    assert {"schema.apply_a", "schema.apply_b", "data.rollback", "late.rollback"} <= skipped_unstarted(middle)
    assert latest(folder) == {"a": "APPLIED", "b": "APPLIED", "n": "APPLIED", "c": "APPLIED", "z": "APPLIED"}


def test_when_false_units_and_stages_are_skipped_before_they_start(changes: Path, sqlite_target: Path) -> None:
    units = {
        "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)"),
        "01_schema/0002_prod.yaml": sql_unit(
            "prod", "CREATE TABLE prod (x INT)", when="\"{{ params.env == 'prod' }}\""
        ),
        "02_extra/stage.yaml": "when: \"{{ params.env == 'prod' }}\"\n",
        "02_extra/0003_e.yaml": sql_unit("e", "CREATE TABLE e (x INT)"),
        "03_after/0004_f.yaml": sql_unit("f", "CREATE TABLE f (x INT)"),
    }
    folder = make_pipeline(changes, "skipwhen", units)
    dag = load_dag("flamingock_skipwhen")
    assert run_dag(dag, env="dev").state == "success"
    assert latest(folder) == {"a": "APPLIED", "prod": None, "e": None, "f": "APPLIED"}  # when false: not audited

    dev = run_dag(dag, env="dev")
    assert dev.state == "success", dev.tasks
    assert dev.started == BOOKKEEPING
    assert {"schema.apply_prod", "extra.apply_e", "extra.rollback"} <= skipped_unstarted(dev)

    prod = run_dag(dag, env="prod")
    assert prod.state == "success", prod.tasks
    assert prod.started == BOOKKEEPING | {"schema.apply_prod", "extra.apply_e", "after.apply_f"}
    assert prod.states("schema.apply_prod", "extra.apply_e", "after.apply_f") == ["success", "success", "skipped"]
    assert latest(folder) == {"a": "APPLIED", "prod": "APPLIED", "e": "APPLIED", "f": "APPLIED"}


def test_a_failure_still_stops_later_units_and_runs_its_rollback_and_clean_up(
    changes: Path, sqlite_target: Path
) -> None:
    units = {
        "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
        "01_schema/0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)", "DROP TABLE b"),
        "02_data/0003_c.yaml": sql_unit("c", "INSERT INTO a VALUES (1)", "DELETE FROM a"),
        "03_cleanup/stage.yaml": "run_after_failure: true\n",
        "03_cleanup/0004_k.yaml": sql_unit("k", "CREATE TABLE k (x INT)"),
        "04_tidy/stage.yaml": "run_after_failure: true\n",
        "04_tidy/0005_t.yaml": sql_unit("t", "CREATE TABLE t (x INT); DROP TABLE t", run_always="true"),
        "05_more/0006_d.yaml": sql_unit("d", "CREATE TABLE d (x INT)"),
    }
    folder = make_pipeline(changes, "skipfail", units)
    assert run_dag(load_dag("flamingock_skipfail")).state == "success"  # everything applied once

    (folder / "01_schema" / "0007_x.yaml").write_text(
        sql_unit("x", "CREATE TABLE x (x INT); INSERT INTO nope VALUES (1)", "DROP TABLE x")
    )
    run = run_dag(load_dag("flamingock_skipfail"))
    assert run.state == "failed"
    assert run.states("schema.apply_x", "schema.rollback") == ["failed", "success"]
    # c and d were done, but come after the failure: they end upstream_failed, as without skipping.
    assert run.states("data.apply_c", "more.apply_d", "complete") == ["upstream_failed"] * 3
    assert run.states("cleanup.apply_k", "tidy.apply_t") == ["skipped", "success"]  # clean-up stages still run
    assert run.started == {
        "lock",
        "plan",
        "schema.apply_x",
        "schema.rollback",
        "cleanup.apply_k",  # after the failure: it starts and finds k done
        "tidy.apply_t",
        "release",
    }
    assert {"schema.apply_a", "schema.apply_b", "data.rollback", "cleanup.rollback", "more.rollback"} == (
        skipped_unstarted(run)
        - {"tidy.rollback", "undo"}
        - {f"undo_stages.{s}" for s in ("schema", "data", "cleanup", "tidy", "more")}
    )
    assert latest(folder)["x"] == "FAILED"


@pytest.mark.parametrize("action", ["plan", "undo"])
def test_plan_and_undo_runs_start_no_unit_or_rollback_task(changes: Path, sqlite_target: Path, action: str) -> None:
    make_pipeline(changes, f"skip{action}", UNITS)
    dag = load_dag(f"flamingock_skip{action}")
    assert run_dag(dag).state == "success"
    run = run_dag(dag, action=action, undo_to="a" if action == "undo" else None)
    assert run.state == "success", run.tasks
    work = {"schema.apply_a", "schema.apply_b", "data.apply_c", "schema.rollback", "data.rollback"}
    if action == "plan":
        # lock passes through without a lease; release has none to release; complete: nothing failed
        assert run.started == {"lock", "plan", "complete", "release"}
        assert run.states("lock", "plan", "complete", "release") == ["success", "success", "success", "skipped"]
        assert skipped_unstarted(run) == work | UNDO
    else:  # the newest stage's undo task rolls c back, then the schema's rolls back b
        assert run.started == BOOKKEEPING | UNDO and run.states(*BOOKKEEPING) == ["success"] * 4
        assert run.states(*sorted(UNDO)) == ["success"] * 3
        assert skipped_unstarted(run) == work


def test_task_per_stage_skips_each_stage_with_nothing_to_do(changes: Path, sqlite_target: Path) -> None:
    folder = make_pipeline(changes, "skipstage", UNITS, WAREHOUSE_PIPELINE + "run_mode: task_per_stage\n")
    dag = load_dag("flamingock_skipstage")
    assert run_dag(dag).state == "success"
    noop = run_dag(dag)
    assert noop.state == "success" and noop.started == BOOKKEEPING
    assert skipped_unstarted(noop) == {"schema.apply", "schema.rollback", "data.apply", "data.rollback", *UNDO}

    (folder / "02_data" / "0004_d.yaml").write_text(sql_unit("d", "CREATE TABLE d (x INT)", "DROP TABLE d"))
    partial = run_dag(load_dag("flamingock_skipstage"))
    assert partial.state == "success", partial.tasks
    assert partial.started == BOOKKEEPING | {"data.apply"}
    assert partial.tasks["schema.apply"] == "skipped" and "schema.apply" not in partial.started
    assert latest(folder)["d"] == "APPLIED"
