"""The DAG action ``rehearse`` through real Airflow (dag.test): one task on scratch, no lease, no unit task."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit
from tests.fixtures.airflow_dags import load_dag, make_pipeline, run_dag, task_xcom

pytestmark = pytest.mark.slow
REHEARSAL = WAREHOUSE_PIPELINE + "rehearsal: {scratch: {warehouse: warehouse_scratch}}\n"
UNITS = {
    "01_schema/0001_orders.yaml": sql_unit("orders", "CREATE TABLE orders (id INT)", "DROP TABLE orders"),
    "01_schema/0002_note.yaml": sql_unit("note", "ALTER TABLE orders ADD COLUMN note TEXT", "SELECT 1"),
}


def rehearse_xcom(dag_id: str, run_id: str) -> Any:
    return task_xcom(dag_id, run_id, "rehearse")


def test_a_rehearse_run_fails_on_a_bad_rollback_and_touches_only_the_scratch_target(
    changes: Path, sqlite_target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_SCRATCH", f"sqlite:///{scratch}")
    folder = make_pipeline(changes, "rehearsed", UNITS, REHEARSAL)
    dag = load_dag("flamingock_rehearsed")
    assert "rehearse" in dag.params.get_param("action").schema["enum"]
    run = run_dag(dag, action="rehearse")
    assert run.state == "failed"
    assert run.tasks["rehearse"] == "failed" and run.tasks["lock"] == "success"
    skipped = ["schema.apply_orders", "schema.apply_note", "schema.rollback", "undo"]
    assert run.states(*skipped) == ["skipped"] * 4 and not run.started & set(skipped)  # never started
    doc = rehearse_xcom(dag.dag_id, run.run_id)
    assert doc["ok"] is False
    assert doc["mismatches"] == [{"id": "note", "phase": "undo", "detail": "table orders: column note still present"}]
    with sqlite3.connect(sqlite_target) as real:
        assert real.execute("SELECT name FROM sqlite_master WHERE name = 'orders'").fetchall() == []
    assert commands.history(folder)["entries"] == []  # the real audit log: nothing written, no lease taken


def test_a_green_rehearsal_succeeds_and_pipelines_without_rehearsal_have_no_such_task(
    changes: Path, sqlite_target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_SCRATCH", f"sqlite:///{tmp_path / 'scratch.db'}")
    good = {**UNITS, "01_schema/0002_note.yaml": sql_unit("note", "CREATE TABLE notes (x INT)", "DROP TABLE notes")}
    make_pipeline(changes, "green", good, REHEARSAL)
    make_pipeline(changes, "plain", good)
    dag = load_dag("flamingock_green")
    run = run_dag(dag, action="rehearse")
    assert run.state == "success" and run.tasks["rehearse"] == "success"
    assert rehearse_xcom(dag.dag_id, run.run_id)["rehearsed"] == ["orders", "note"]
    plain = load_dag("flamingock_plain")
    assert "rehearse" not in plain.task_dict
    assert "rehearse" not in plain.params.get_param("action").schema["enum"]
    applied = run_dag(dag)  # an apply run of the rehearsed pipeline skips the rehearse task before it starts
    assert applied.state == "success" and applied.tasks["rehearse"] == "skipped"
    assert "rehearse" not in applied.started
