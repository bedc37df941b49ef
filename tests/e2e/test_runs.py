"""A real Airflow runs pipelines dropped into its DAGs folder and triggered through the REST API."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from flamingock_provider import commands
from tests.conftest import REPO
from tests.e2e.harness import AirflowClient, AirflowServer
from tests.e2e.pipelines import counted, failing, orders


def latest_states(pipeline_dir: Path) -> dict[str, str]:
    states: dict[str, str] = {}
    for entry in commands.history(pipeline_dir)["entries"]:
        states[entry["change_id"]] = entry["state"]
    return states


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def deploy(server: AirflowServer, client: AirflowClient, name: str, files: dict[str, str]) -> tuple[str, Path]:
    """Drop a pipeline folder into the DAGs folder, wait until its DAG is served, unpause it."""
    folder = server.add_pipeline(name, files)
    dag_id = f"flamingock_{name}"
    client.wait_for_dag(dag_id)
    client.unpause(dag_id)
    return dag_id, folder


def test_the_warehouse_example_folder_applies_on_a_real_airflow(
    airflow_server: AirflowServer, airflow: AirflowClient
) -> None:
    folder = airflow_server.copy_pipeline(REPO / "dags" / "changes" / "warehouse")
    airflow.wait_for_dag("flamingock_warehouse")
    airflow.unpause("flamingock_warehouse")

    run_id, state = airflow.run_pipeline("flamingock_warehouse", {"action": "apply", "undo_to": None})
    assert state == "success", airflow.task_states("flamingock_warehouse", run_id)
    states = latest_states(folder)
    assert len(states) == 6 and set(states.values()) == {"APPLIED"}, states
    tables = {
        row[0] for row in query(airflow_server.warehouse_db, "SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert {"products", "orders", "order_lines"} <= tables


def test_apply_plan_and_undo_from_the_trigger_form_conf(airflow_server: AirflowServer, airflow: AirflowClient) -> None:
    dag_id, folder = deploy(airflow_server, airflow, "e2e_orders", orders("e2e_orders"))
    db = airflow_server.warehouse_db

    run_id, state = airflow.run_pipeline(dag_id, {"action": "apply", "undo_to": None})
    tasks = airflow.task_states(dag_id, run_id)
    assert state == "success", tasks
    assert tasks["lock"] == tasks["plan"] == tasks["complete"] == tasks["release"] == "success"
    units = ["schema.apply_create-orders", "schema.apply_orders-index", "data.apply_seed-orders"]
    assert [tasks[t] for t in units] == ["success"] * 3
    assert tasks["schema.rollback"] == tasks["data.rollback"] == tasks["undo"] == "skipped"
    assert latest_states(folder) == dict.fromkeys(["create-orders", "orders-index", "seed-orders"], "APPLIED")
    entries = commands.history(folder)["entries"]
    assert {(e["dag_id"], e["run_id"]) for e in entries} == {(dag_id, run_id)}
    assert query(db, "SELECT id, total FROM e2e_orders ORDER BY id") == [(1, 9.5), (2, 20.0)]

    run_id, state = airflow.run_pipeline(dag_id, {"action": "plan", "undo_to": None})
    tasks = airflow.task_states(dag_id, run_id)
    assert state == "success", tasks
    assert [tasks[t] for t in units] == ["skipped"] * 3
    assert (tasks["lock"], tasks["complete"], tasks["release"]) == ("success", "success", "skipped")  # no lease
    assert len(commands.history(folder)["entries"]) == len(entries)  # plan writes nothing

    run_id, state = airflow.run_pipeline(dag_id, {"action": "undo", "undo_to": "create-orders"})
    tasks = airflow.task_states(dag_id, run_id)
    assert state == "success", tasks
    assert tasks["undo"] == tasks["undo_stages.data"] == tasks["undo_stages.schema"] == "success"  # each stage's share
    assert latest_states(folder) == {
        "create-orders": "APPLIED",
        "orders-index": "ROLLED_BACK",
        "seed-orders": "ROLLED_BACK",
    }
    assert query(db, "SELECT count(*) FROM e2e_orders") == [(0,)]
    assert query(db, "SELECT name FROM sqlite_master WHERE name = 'e2e_orders_total'") == []


def test_a_failing_unit_fails_the_run_after_visible_compensation(
    airflow_server: AirflowServer, airflow: AirflowClient
) -> None:
    dag_id, folder = deploy(airflow_server, airflow, "e2e_failing", failing("e2e_failing"))

    run_id, state = airflow.run_pipeline(dag_id, {"action": "apply", "undo_to": None})
    tasks = airflow.task_states(dag_id, run_id)
    assert state == "failed", tasks
    assert tasks["load.apply_create-table"] == "success"
    assert tasks["load.apply_broken-insert"] == "failed"
    assert tasks["load.rollback"] == "success"  # the compensation ran, as a task of its own
    assert tasks["release"] == "success"
    assert latest_states(folder) == {"create-table": "ROLLED_BACK", "broken-insert": "FAILED"}
    failed = [e for e in commands.history(folder)["entries"] if e["state"] == "FAILED"]
    assert "no_such_table" in failed[0]["error"]["message"]
    assert query(airflow_server.warehouse_db, "SELECT name FROM sqlite_master WHERE name = 'e2e_failing'") == []


def test_two_triggers_and_a_cli_apply_apply_each_unit_once(
    airflow_server: AirflowServer, airflow: AirflowClient
) -> None:
    dag_id, folder = deploy(airflow_server, airflow, "e2e_race", counted("e2e_race", 4))

    cli = airflow_server.popen_cli("apply", str(folder), "--json")
    runs = [airflow.trigger(dag_id, {"action": "apply", "undo_to": None}) for _ in range(2)]
    out, err = cli.communicate(timeout=240)
    states = [airflow.wait_for_run(dag_id, run_id, timeout=240) for run_id in runs]

    assert cli.returncode == 0, out + err
    assert states == ["success", "success"], [airflow.task_states(dag_id, r) for r in runs]
    applied = Counter(e["change_id"] for e in commands.history(folder)["entries"] if e["state"] == "APPLIED")
    assert applied == Counter({"create-log": 1, "row-2": 1, "row-3": 1, "row-4": 1})
    rows = query(airflow_server.warehouse_db, "SELECT unit FROM e2e_race ORDER BY unit")
    assert rows == [("row-2",), ("row-3",), ("row-4",)]


def test_a_rerun_with_nothing_to_do_starts_no_unit_task(airflow_server: AirflowServer, airflow: AirflowClient) -> None:
    """The plan task skips done units through the execution API: the scheduler never hands them to a worker."""
    dag_id, _ = deploy(airflow_server, airflow, "e2e_noop", orders("e2e_noop"))
    assert airflow.run_pipeline(dag_id, {"action": "apply", "undo_to": None})[1] == "success"
    run_id, state = airflow.run_pipeline(dag_id, {"action": "apply", "undo_to": None})
    tis = airflow.task_instances(dag_id, run_id)
    assert state == "success", {ti["task_id"]: ti["state"] for ti in tis}
    started = {ti["task_id"] for ti in tis if ti.get("hostname") or ti.get("pid")}
    assert started == {"lock", "plan", "complete", "release"}
    assert {ti["task_id"]: ti["state"] for ti in tis if ti["task_id"] not in started} == {
        "schema.apply_create-orders": "skipped",
        "schema.apply_orders-index": "skipped",
        "schema.rollback": "skipped",
        "data.apply_seed-orders": "skipped",
        "data.rollback": "skipped",
        "undo": "skipped",
        "undo_stages.schema": "skipped",
        "undo_stages.data": "skipped",
    }
