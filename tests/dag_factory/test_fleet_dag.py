"""A fleet pipeline through real Airflow (dag.test on a migrated metadata DB), SPEC §10 and §13.

One DAG whatever the member count: a members task, one TaskGroup per declared wave with a task mapped
over that wave's members (map index named after the member), then a report that fails the run naming
the members that failed. Members come from a Variable (``AIRFLOW_VAR_*``) read when the run starts; a
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


def member_tasks(dag_id: str, run_id: str) -> dict[str, tuple[str, str | None]]:
    """rendered map index (the member) -> (task id, state) of the run's mapped member tasks."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        return {
            str(ti.rendered_map_index): (ti.task_id, str(ti.state) if ti.state else None)
            for ti in tis
            if ti.map_index >= 0
        }


def applied(tmp_path: Path, name: str) -> Any:
    with sqlite3.connect(tmp_path / f"{name}.db") as conn:
        try:
            return [r[0] for r in conn.execute("SELECT x FROM a")]
        except sqlite3.OperationalError:
            return None


@pytest.mark.slow
def test_a_fleet_dag_maps_each_wave_over_its_members_resolved_when_the_run_starts(
    changes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_pipeline(changes, "fleetdag", UNITS, fleet_yaml())
    dag = load_dag("flamingock_fleetdag")
    assert sorted(dag.task_ids) == [
        "members",
        "report",
        *(f"wave_{n}.{t}" for n in (1, 2, 3) for t in ("member", "members")),
    ]

    assert {dag.get_task(f"wave_{n}.member").max_active_tis_per_dagrun for n in (1, 2, 3)} == {8}

    set_members(tmp_path, monkeypatch, ["acme", "globex", "initech", "umbrella"])
    first = run_dag(dag)
    assert first.state == "success"
    assert member_tasks(dag.dag_id, first.run_id) == {
        "acme": ("wave_1.member", "success"),
        "globex": ("wave_2.member", "success"),
        "initech": ("wave_2.member", "success"),
        "umbrella": ("wave_3.member", "success"),
    }
    assert all(applied(tmp_path, n) == [1] for n in ("acme", "globex", "initech", "umbrella"))
    entries = commands.history(folder, member="globex")["entries"]
    assert {(e["member"], e["dag_id"]) for e in entries} == {("globex", "flamingock_fleetdag")}

    undo = run_dag(dag, action="undo", undo_to="a")  # every member rolls back b, under its own lease
    assert undo.state == "success"
    assert all(applied(tmp_path, n) == [] for n in ("acme", "globex", "initech", "umbrella"))
    assert commands.history(folder, member="acme")["entries"][-1]["state"] == "ROLLED_BACK"


@pytest.mark.slow
def test_halt_stops_later_waves_after_a_failed_canary_and_the_run_fails_naming_it(
    changes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pipeline(changes, "fleethalt", UNITS, fleet_yaml())
    set_members(tmp_path, monkeypatch, ["canary", "b", "c"])
    with sqlite3.connect(tmp_path / "canary.db") as conn:
        conn.execute("CREATE VIEW a AS SELECT 1 AS x")  # its CREATE TABLE fails, and so does the rollback
    dag = load_dag("flamingock_fleethalt")
    run = run_dag(dag)
    assert run.state == "failed"
    assert member_tasks(dag.dag_id, run.run_id) == {"canary": ("wave_1.member", "failed")}  # wave 2 never expanded
    assert run.tasks["report"] == "failed" and run.tasks["wave_2.member"] == "upstream_failed"
    assert applied(tmp_path, "b") is None and applied(tmp_path, "c") is None

    # on_error: continue: every wave starts whatever the waves before it did (the report still fails the run).
    make_pipeline(changes, "fleetgoon", UNITS, fleet_yaml("  on_error: continue\n"))
    goon = load_dag("flamingock_fleetgoon")
    rules = [goon.get_task(f"wave_{n}.members").trigger_rule for n in (1, 2, 3)]
    assert rules == ["all_success", "all_done", "all_done"] and goon.get_task("report").trigger_rule == "all_done"
    assert [dag.get_task(f"wave_{n}.members").trigger_rule for n in (2, 3)] == ["none_failed", "none_failed"]
