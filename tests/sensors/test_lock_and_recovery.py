"""The lock sensor against a lease another owner holds; audit entries of a task whose worker died."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from flamingock_provider import commands
from flamingock_provider.core.model import Action, State
from flamingock_provider.operators._common import execution_id, run_info
from flamingock_provider.operators.callbacks import record_interrupted_unit
from tests.conftest import sql_unit
from tests.fixtures.airflow_dags import load_dag, make_pipeline, run_dag

UNITS = {"01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a", transactional="false")}


def pipeline_yaml(mode: str, timeout: float) -> str:
    return (
        "targets:\n  warehouse: {conn_id: warehouse_db}\n"
        f"lock: {{wait_timeout_seconds: {timeout}, poke_interval_seconds: 0.3, mode: {mode}, lease_seconds: 60}}\n"
    )


def hold_lease(folder: Path, owner: str) -> None:
    with commands.workspace(folder) as ws:
        assert ws.lease(owner).try_acquire() is not None


def test_lock_waits_for_another_owner_then_fails_naming_the_holder(
    changes: Path, sqlite_target: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = make_pipeline(changes, "lockheld", UNITS, pipeline_yaml("poke", 1.5))
    hold_lease(folder, "cli/other-host/42/abcd")
    run = run_dag(load_dag("flamingock_lockheld"))
    assert run.state == "failed" and run.tasks["lock"] == "failed"
    assert run.states("plan", "schema.apply_a") == ["upstream_failed", "upstream_failed"]
    out = capfd.readouterr().out
    # "after Ns": the wait's own length, 1.5 s and a poke or two more (never asserted to the second)
    assert re.search(
        r"lock for pipeline 'lockheld' not acquired after \d+s: held by 'cli/other-host/42/abcd' until 20", out
    )
    assert "flamingock unlock" in out
    assert commands.history(folder)["entries"] == []
    assert commands.status(folder)["lock"]["owner"] == "cli/other-host/42/abcd"  # not released by the run


def test_lock_in_reschedule_mode_takes_the_lease_once_it_is_freed(changes: Path, sqlite_target: Path) -> None:
    folder = make_pipeline(changes, "lockfreed", UNITS, pipeline_yaml("reschedule", 30))
    hold_lease(folder, "cli/other-host/42/abcd")
    freeing = threading.Timer(1.0, lambda: commands.unlock(folder, force=True))
    freeing.start()
    try:
        run = run_dag(load_dag("flamingock_lockfreed"))
    finally:
        freeing.cancel()
    assert run.state == "success", run.tasks
    assert commands.status(folder)["changes"][0]["state"] == "APPLIED"
    assert commands.status(folder)["lock"] is None


def fake_context(dag: object, task_id: str, run_id: str) -> dict[str, object]:
    ti = SimpleNamespace(dag_id=dag.dag_id, run_id=run_id, task_id=task_id, try_number=1)  # type: ignore[attr-defined]
    return {"ti": ti, "dag": dag, "task": dag.get_task(task_id), "params": {}, "exception": None}  # type: ignore[attr-defined]


def test_failure_callback_closes_a_started_unit_of_this_run_only(changes: Path, sqlite_target: Path) -> None:
    folder = make_pipeline(changes, "crashed", UNITS, pipeline_yaml("poke", 5))
    dag = load_dag("flamingock_crashed")
    context = fake_context(dag, "schema.apply_a", "manual__crash")
    with commands.workspace(folder) as ws:  # the unit's task wrote STARTED, then its worker was killed
        engine = ws.engine(run=run_info(context))  # type: ignore[arg-type]
        engine.executor.record(ws.pipeline.unit("a"), State.STARTED, Action.APPLY)
    other = fake_context(dag, "schema.apply_a", "manual__other_run")
    record_interrupted_unit(other)  # another run's callback: not its entry, nothing written
    assert [e["state"] for e in commands.history(folder)["entries"]] == ["STARTED"]

    record_interrupted_unit(context)
    entries = commands.history(folder)["entries"]
    assert [e["state"] for e in entries] == ["STARTED", "FAILED"]
    assert entries[-1]["execution_id"] == execution_id(dag.dag_id, "manual__crash")
    assert "ended without recording a result" in entries[-1]["error"]["message"]
    record_interrupted_unit(context)  # idempotent: the latest entry is no longer STARTED
    assert len(commands.history(folder)["entries"]) == 2


def test_pipeline_folder_is_found_in_the_bundle_the_worker_holds(changes: Path, tmp_path: Path) -> None:
    import shutil

    make_pipeline(changes, "moved", UNITS)
    dag = load_dag("flamingock_moved")
    task = dag.get_task("schema.apply_a")
    elsewhere = tmp_path / "bundle-copy"
    shutil.copytree(changes.parent, elsewhere)
    dag.relative_fileloc = "flamingock_dags.py"
    context = {"dag": dag, "ti": SimpleNamespace(bundle_instance=SimpleNamespace(path=elsewhere))}
    assert task.resolve_pipeline_dir(context) == elsewhere / "changes" / "moved"
    assert task.resolve_pipeline_dir({"dag": dag, "ti": SimpleNamespace()}) == changes / "moved"
