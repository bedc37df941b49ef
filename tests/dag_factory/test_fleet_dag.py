"""A fleet pipeline through real Airflow (dag.test on a migrated metadata DB), SPEC §10 and §13.

One DAG whatever the member count: a members task, then per declared wave a task handing on the wave's
members and a task group mapped over them (one map index per member, named after it) holding the
pipeline's own lock, plan, stage, undo and release tasks, then a report that fails the run naming the
members that failed. Members come from a Variable (``AIRFLOW_VAR_*``) read when the run starts; a
member added to it later is covered on the real standalone (``tests/e2e/test_fleet.py``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from tests.conftest import sql_unit
from tests.fixtures.airflow_dags import load_dag, make_pipeline, run_dag

UNITS = {
    "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a", transactional="false"),
    "0002_b.yaml": sql_unit("b", "INSERT INTO a VALUES (1)", "DELETE FROM a"),
}


def fleet_yaml(extra: str = "") -> str:
    return (
        "targets:\n  app: {conn_id: base_db}\nlock: {poke_interval_seconds: 0.05}\n"
        "fleet:\n  members_from: {variable: fleet_dag_tenants}\n  waves: [1, '50%', rest]\n  max_parallel: 8\n" + extra
    )


def set_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
    for name in names:
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}_DB", f"sqlite:///{tmp_path / (name + '.db')}")
    members = [{"name": n, "targets": {"app": f"{n}_db"}} for n in names]
    monkeypatch.setenv("AIRFLOW_VAR_FLEET_DAG_TENANTS", json.dumps(members))


def member_tasks(dag_id: str, run_id: str) -> dict[str, dict[str, str | None]]:
    """member -> {task id: state} of the run's mapped task instances (the member from its wave's lock task)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        mapped = [(ti.task_id, ti.map_index, ti.rendered_map_index, ti.state) for ti in tis if ti.map_index >= 0]
    names = {(t.split(".")[0], i): str(r) for t, i, r, _ in mapped if t.endswith(".lock")}
    found: dict[str, dict[str, str | None]] = {}
    for task_id, index, _, state in mapped:
        found.setdefault(names[(task_id.split(".")[0], index)], {})[task_id] = str(state) if state else None
    return found


def started(dag_id: str, run_id: str) -> set[str]:
    """task id[map index] of the mapped task instances a worker started (the others were skipped unstarted)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        return {f"{ti.task_id}[{ti.map_index}]" for ti in tis if ti.map_index >= 0 and ti.pid is not None}


def report_outcome(dag_id: str, run_id: str) -> Any:
    """What the fleet's report task said of the run (XCom ``outcome``)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id, task_id="report", key="outcome").one()
        value = row.value
    return json.loads(value) if isinstance(value, str) else value


def applied(tmp_path: Path, name: str) -> Any:
    with sqlite3.connect(tmp_path / f"{name}.db") as conn:
        try:
            return [r[0] for r in conn.execute("SELECT x FROM a")]
        except sqlite3.OperationalError:
            return None


GROUP_TASKS = ("lock", "plan", "main.apply_a", "main.apply_b", "main.rollback", "undo", "undo_stages.main")
GROUP_TASKS += ("complete", "release")


@pytest.mark.slow
def test_each_wave_is_a_task_group_mapped_over_its_members_resolved_when_the_run_starts(
    changes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_pipeline(changes, "fleetdag", UNITS, fleet_yaml())
    dag = load_dag("flamingock_fleetdag")
    waves = [f"wave_{n}" for n in (1, 2, 3)]
    assert sorted(dag.task_ids) == sorted(
        ["members", "report", *(f"{w}_members" for w in waves), *(f"{w}.{t}" for w in waves for t in GROUP_TASKS)]
    )
    group = dag.task_group_dict["wave_2"]
    assert type(group).__name__ == "MappedTaskGroup"
    assert {dag.get_task(f"wave_2.{t}").max_active_tis_per_dagrun for t in GROUP_TASKS} == {8}
    assert dag.get_task("wave_2.release").is_teardown and dag.get_task("wave_2.lock").is_setup

    set_members(tmp_path, monkeypatch, ["acme", "globex", "initech"])  # waves of 1, 2 (50 % of 3) and none
    plan = run_dag(dag, action="plan")  # no lease, no change; every member's unit tasks skipped unstarted
    assert plan.state == "success"
    assert all(applied(tmp_path, n) is None for n in ("acme", "globex", "initech"))
    assert not {t for t in started(dag.dag_id, plan.run_id) if ".main." in t}

    first = run_dag(dag)
    assert first.state == "success"
    tasks = member_tasks(dag.dag_id, first.run_id)
    assert {name: sorted({t.split(".")[0] for t in ts}) for name, ts in tasks.items()} == {
        "acme": ["wave_1"],
        "globex": ["wave_2"],
        "initech": ["wave_2"],
    }
    assert first.tasks["wave_3.lock"] == "skipped" and first.tasks["report"] == "success"  # an empty wave
    assert tasks["initech"]["wave_2.main.apply_b"] == "success" and tasks["acme"]["wave_1.release"] == "success"
    assert all(applied(tmp_path, n) == [1] for n in ("acme", "globex", "initech"))
    entries = commands.history(folder, member="globex")["entries"]
    assert {(e["member"], e["dag_id"]) for e in entries} == {("globex", "flamingock_fleetdag")}
    assert {e["task_id"] for e in entries} == {"wave_2.main.apply_a", "wave_2.main.apply_b"}

    again = run_dag(dag)  # nothing to do: each member's plan skips its unit tasks before they start
    assert again.state == "success"
    assert set(member_tasks(dag.dag_id, again.run_id)["globex"].values()) <= {"success", "skipped"}
    assert not {t for t in started(dag.dag_id, again.run_id) if ".main." in t}

    undo = run_dag(dag, action="undo", undo_to="a")  # every member rolls back b, under its own lease
    assert undo.state == "success"
    assert all(applied(tmp_path, n) == [] for n in ("acme", "globex", "initech"))
    assert commands.history(folder, member="acme")["entries"][-1]["state"] == "ROLLED_BACK"
    assert member_tasks(dag.dag_id, undo.run_id)["initech"]["wave_2.undo_stages.main"] == "success"


@pytest.mark.slow
def test_halt_stops_later_waves_after_a_failed_canary_and_continue_finishes_them_but_fails_the_run(
    changes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pipeline(changes, "fleethalt", UNITS, fleet_yaml())
    set_members(tmp_path, monkeypatch, ["canary", "b", "c"])
    with sqlite3.connect(tmp_path / "canary.db") as conn:
        conn.execute("CREATE VIEW a AS SELECT 1 AS x")  # its CREATE TABLE fails, and so does the rollback
    dag = load_dag("flamingock_fleethalt")
    run = run_dag(dag)
    assert run.state == "failed"
    canary = member_tasks(dag.dag_id, run.run_id)
    assert list(canary) == ["canary"]  # waves 2 and 3 never expanded
    assert canary["canary"]["wave_1.main.apply_a"] == "failed" and canary["canary"]["wave_1.main.rollback"] == "failed"
    assert canary["canary"]["wave_1.release"] == "success"  # the lease is released whatever failed
    assert run.tasks["report"] == "failed" and run.tasks["wave_2_members"] == "upstream_failed"
    assert applied(tmp_path, "b") is None and applied(tmp_path, "c") is None
    assert commands.status(changes / "fleethalt", member="canary")["lock"] is None  # released whatever failed
    assert report_outcome(dag.dag_id, run.run_id) == {
        "failed": {"canary": ["main.apply_a", "main.rollback"]},
        "blocked": {},
        "not_run": ["b", "c"],
    }
    blocked = run_dag(dag)  # the canary's rollback failed: its change is blocked until `flamingock fix`
    assert blocked.state == "failed"
    assert report_outcome(dag.dag_id, blocked.run_id)["blocked"] == {"canary": ["a"]}

    # on_error: continue: every wave starts whatever the waves before it did, and the report still fails
    # the run; a member whose connection is missing fails alone, with a message naming it and the target.
    make_pipeline(changes, "fleetgoon", UNITS, fleet_yaml("  on_error: continue\n"))
    monkeypatch.delenv("AIRFLOW_CONN_C_DB")
    goon = load_dag("flamingock_fleetgoon")
    assert [goon.get_task(f"wave_{n}_members").trigger_rule for n in (1, 2, 3)] == [
        "all_success",
        "all_done",
        "all_done",
    ]
    assert [dag.get_task(f"wave_{n}_members").trigger_rule for n in (2, 3)] == ["none_failed", "none_failed"]
    went = run_dag(goon)
    assert went.state == "failed"
    tasks = member_tasks(goon.dag_id, went.run_id)
    assert tasks["b"]["wave_2.main.apply_b"] == "success" and applied(tmp_path, "b") == [1]
    assert tasks["c"]["wave_2.lock"] == "failed" and "wave_2.plan" in tasks["c"]
    assert applied(tmp_path, "c") is None
    assert commands.history(changes / "fleetgoon", member="b")["entries"][-1]["state"] == "APPLIED"


def test_a_fleet_inside_a_user_dag_keeps_its_waves_and_report_under_the_group(tmp_path: Path) -> None:
    """build_task_group of a fleet: the report finds each wave's group under the user's TaskGroup prefix."""
    from airflow.sdk import DAG

    from flamingock_provider import build_task_group

    folder = make_pipeline(tmp_path, "fleetetl", UNITS, fleet_yaml())
    with DAG(dag_id="etl", schedule=None) as dag:
        group = build_task_group(folder)
    report = dag.get_task("flamingock_fleetetl.report")
    assert report.wave_groups == [f"flamingock_fleetetl.wave_{n}" for n in (1, 2, 3)]
    assert {t.task_id for t in group.get_leaves()} >= {"flamingock_fleetetl.report"}
    plan = dag.get_task("flamingock_fleetetl.wave_2.plan")
    assert plan.lock_task_id == "flamingock_fleetetl.wave_2.lock"
    assert type(dag.task_group_dict["flamingock_fleetetl.wave_2"]).__name__ == "MappedTaskGroup"
