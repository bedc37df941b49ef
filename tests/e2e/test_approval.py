"""Approvals in a real Airflow (SPEC §10, §14): the approve task asks, a person answers through the REST API.

Approve → the run goes on and every audit entry names the approver and the note; Reject or no answer
in time → the run fails with nothing applied or undone and the lease released; a run with nothing that
needs approval passes straight through; ``destructive`` asks only for destructive (or unknown) units,
``always`` for every unit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flamingock_provider import commands
from tests.conftest import sql_unit
from tests.e2e.harness import AirflowClient, AirflowServer
from tests.e2e.pipelines import pipeline_yaml
from tests.e2e.test_runs import deploy, query

WAITING = {"awaiting_input", "deferred"}


def hitl_path(dag_id: str, run_id: str, task_id: str = "approve") -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"


def wait_for_question(client: AirflowClient, dag_id: str, run_id: str) -> dict[str, Any]:
    """Wait until the approve task waits for an answer; return its human-in-the-loop request."""
    client.wait_for_task_state(dag_id, run_id, "approve", WAITING, timeout=90)
    return dict(client.get(hitl_path(dag_id, run_id)))


def answer(client: AirflowClient, dag_id: str, run_id: str, option: str, note: str = "") -> None:
    """Answer as a person would: seconds after the question, not within the scheduler's next loop.

    An answer in the same second as the question races Airflow 3.3 itself: the scheduler re-queues the
    task for the answer, then handles the executor's late "success" event of the process that asked and
    marks the task failed ("state changed externally"). Seen in about half the runs before this wait.
    """
    time.sleep(3)
    response = client.http.patch(
        hitl_path(dag_id, run_id), json={"chosen_options": [option], "params_input": {"note": note}}
    )
    assert response.status_code == 200, response.text


def entries(folder: Path) -> list[dict[str, Any]]:
    return list(commands.history(folder)["entries"])


def test_a_destructive_change_waits_for_approval_and_its_undo_is_rejected(
    airflow_server: AirflowServer, airflow: AirflowClient
) -> None:
    files = {
        "pipeline.yaml": pipeline_yaml(poke=0.5, extra="approval: {required: destructive, timeout_hours: 1}\n"),
        "0001_create_events.yaml": sql_unit(
            "create-events", "CREATE TABLE e2e_appr_events (id INTEGER)", "DROP TABLE e2e_appr_events"
        ),
        "0002_create_legacy.yaml": sql_unit(
            "create-legacy", "CREATE TABLE e2e_appr_legacy (id INTEGER)", "DROP TABLE e2e_appr_legacy"
        ),
        "0003_drop_legacy.yaml": sql_unit(
            "drop-legacy", "DROP TABLE e2e_appr_legacy", "CREATE TABLE e2e_appr_legacy (id INTEGER)"
        ),
    }
    dag_id, folder = deploy(airflow_server, airflow, "e2e_approve", files)
    run_id = airflow.trigger(dag_id, {"action": "apply", "undo_to": None})
    question = wait_for_question(airflow, dag_id, run_id)
    assert (
        question["options"] == ["Approve", "Reject"]
        and "1 change(s) need approval (destructive)" in question["subject"]
    )
    body = question["body"]
    assert "| `drop-legacy` | main | destructive |" in body and "DROP TABLE e2e_appr_legacy;" in body
    assert "| `create-events` | main | safe |" in body and "CREATE TABLE e2e_appr_events (id INTEGER);" in body
    assert entries(folder) == []  # nothing runs before the answer

    waiting = airflow.get("/flamingock/api/pipelines")["pipelines"]
    mine = next(p for p in waiting if p["dag_id"] == dag_id)
    assert [(a["run_id"], a["task_id"]) for a in mine["awaiting_approval"]] == [(run_id, "approve")]
    assert mine["awaiting_approval"][0]["link"].endswith("/tasks/approve/required_actions")

    answer(airflow, dag_id, run_id, "Approve", "CHG-7: legacy table is unused")
    assert airflow.wait_for_run(dag_id, run_id) == "success", airflow.task_states(dag_id, run_id)
    written = entries(folder)
    assert len(written) == 6 and {(e["approved_by"], e["approval_note"]) for e in written} == {
        ("admin", "CHG-7: legacy table is unused")
    }
    assert {e["bundle_version"] for e in written} == {None}  # the DAGs folder is an unversioned LocalDagBundle
    after = airflow.get("/flamingock/api/pipelines")["pipelines"]
    assert next(p for p in after if p["dag_id"] == dag_id)["awaiting_approval"] == []

    # Nothing left to apply: the approve task passes straight through, asking nobody.
    again, state = airflow.run_pipeline(dag_id, {"action": "apply", "undo_to": None})
    assert state == "success" and airflow.task_states(dag_id, again)["approve"] == "success"
    assert airflow.http.get(hitl_path(dag_id, again)).status_code == 404

    # Undoing the drop needs approval too; Reject fails the run and undoes nothing.
    undo_id = airflow.trigger(dag_id, {"action": "undo", "undo_to": "create-legacy"})
    assert "undo of pipeline e2e_approve" in wait_for_question(airflow, dag_id, undo_id)["subject"]
    answer(airflow, dag_id, undo_id, "Reject")
    assert airflow.wait_for_run(dag_id, undo_id) == "failed"
    tasks = airflow.task_states(dag_id, undo_id)
    assert tasks["approve"] == "failed" and tasks["undo"] == "upstream_failed" and tasks["release"] == "success"
    assert len(entries(folder)) == 6 and commands.status(folder)["lock"] is None
    assert not query(airflow_server.warehouse_db, "SELECT name FROM sqlite_master WHERE name = 'e2e_appr_legacy'")


def test_always_asks_for_a_safe_change_and_no_answer_in_time_fails_the_run(
    airflow_server: AirflowServer, airflow: AirflowClient
) -> None:
    files = {
        "pipeline.yaml": pipeline_yaml(poke=0.5, extra="approval: {required: always, timeout_hours: 0.001}\n"),
        "0001_create_audit.yaml": sql_unit("create-audit", "CREATE TABLE e2e_appr_timeout (id INTEGER)"),
    }
    dag_id, folder = deploy(airflow_server, airflow, "e2e_approve_timeout", files)
    run_id = airflow.trigger(dag_id, {"action": "apply", "undo_to": None})
    assert "(safe)" in wait_for_question(airflow, dag_id, run_id)["subject"]  # always: even a safe change asks
    assert airflow.wait_for_run(dag_id, run_id, timeout=90) == "failed"  # 3.6 s, then the scheduler's sweep
    tasks = airflow.task_states(dag_id, run_id)
    assert tasks["approve"] == "failed" and tasks["main.apply_create-audit"] == "upstream_failed"
    assert tasks["release"] == "success" and commands.status(folder)["lock"] is None
    assert entries(folder) == []
