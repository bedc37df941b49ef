"""The Airflow plan task logs each unit's risk, reasons and impact (SPEC §14)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import sql_unit
from tests.fixtures.airflow_dags import load_dag, make_pipeline, run_dag, task_xcom


def test_plan_task_reports_risk_and_impact(changes: Path, sqlite_target: Path) -> None:
    with sqlite3.connect(sqlite_target) as db:
        db.execute("CREATE TABLE legacy (x INT)")
        db.executemany("INSERT INTO legacy VALUES (?)", [(n,) for n in range(5)])
    make_pipeline(
        changes,
        "riskplan",
        {
            "0001_add.yaml": sql_unit("add", "CREATE TABLE fresh (x INT)", "DROP TABLE fresh"),
            "0002_purge.yaml": sql_unit("purge", "DELETE FROM legacy WHERE x > 1", "SELECT 1"),
        },
    )
    run = run_dag(load_dag("flamingock_riskplan"), action="plan")
    assert run.state == "success", run.tasks
    pushed = _plan_xcom("flamingock_riskplan", run.run_id)
    assert pushed["risk"] == {
        "add": {"risk": "safe", "impact": None},
        "purge": {"risk": "rewrite", "impact": "table legacy: 3 rows match the WHERE"},
    }


def test_plan_log_lines_name_risk_reasons_and_impact() -> None:
    from flamingock_provider.core.model import ChangeUnit, NextAction
    from flamingock_provider.core.plan import Decision
    from flamingock_provider.operators.plan import plan_lines

    unit = ChangeUnit(
        id="purge", author="a", order=1, stage="main", source_file="0001_p.yaml", checksum="", kind="template"
    )
    details = {"purge": {"risk": "rewrite", "impact": "table legacy: 3 rows", "reasons": ["rewrite: DELETE ..."]}}
    text = plan_lines([Decision(unit, None, NextAction.APPLY)], details)
    assert "purge" in text and "rewrite" in text and "impact: table legacy: 3 rows" in text
    assert text.splitlines()[1].strip() == "rewrite: DELETE ..."


def _plan_xcom(dag_id: str, run_id: str) -> dict:  # type: ignore[type-arg]
    return task_xcom(dag_id, run_id, "plan")  # type: ignore[no-any-return]


def test_preconditions_in_airflow_skip_the_unit_task_and_audit_what_they_saw(
    changes: Path, sqlite_target: Path
) -> None:
    from flamingock_provider import commands

    with sqlite3.connect(sqlite_target) as db:
        db.execute("CREATE TABLE legacy (x INT)")
        db.execute("INSERT INTO legacy VALUES (1)")
    checked = sql_unit("drop-legacy", "DROP TABLE legacy") + (
        'checks:\n  - sql: "SELECT count(*) FROM legacy"\n    expect: 0\non_check_fail: skip\n'
    )
    folder = make_pipeline(
        changes,
        "riskcheck",
        {"0001_drop.yaml": checked, "0002_after.yaml": sql_unit("after", "CREATE TABLE after_it (x INT)")},
    )
    run = run_dag(load_dag("flamingock_riskcheck"))
    assert run.state == "success", run.tasks
    assert run.states("main.apply_drop-legacy", "main.apply_after") == ["skipped", "success"], run.tasks
    entries = [e for e in commands.history(folder)["entries"] if e["change_id"] == "drop-legacy"]
    assert [(e["state"], e["check_outcome"]["saw"], e["run_id"]) for e in entries] == [("CHECK_FAILED", 1, run.run_id)]
