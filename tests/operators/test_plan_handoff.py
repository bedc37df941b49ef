"""What the plan task hands a unit task in its stage's XCom: the lease token and the analysed risk.

A unit task makes one XCom read (the plan's, for its stage) instead of two: the lock task's token
comes with the decisions. The store checks that token like any other; when the lock task has run
again since the plan (a cleared run), the task reads the lock task's own token. The risk level the
plan analysed is recorded as it is when the unit file is unchanged (same checksum), so the task
does not parse its SQL again; a changed file is analysed afresh.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from flamingock_provider import commands
from flamingock_provider.operators.plan import TOKEN_KEY, decisions_to_xcom, handed_token, risks_from_xcom
from tests.conftest import sql_unit
from tests.fixtures.airflow_dags import make_pipeline

UNITS = {
    "01_main/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
    "01_main/0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)", "DROP TABLE b"),
}


def execute(folder: Path, unit_id: str, xcoms: dict[str, Any], pulls: list[str]) -> dict[str, Any]:
    from airflow.sdk import DAG

    from flamingock_provider.operators.apply import FlamingockApplyOperator

    with DAG(dag_id="handoff", schedule=None) as dag:
        task = FlamingockApplyOperator(
            task_id=f"apply_{unit_id}", pipeline_dir=folder, unit_id=unit_id, lock_task_id="lock", plan_task_id="plan"
        )

    def xcom_pull(task_ids: str, key: str = "return_value") -> Any:
        pulls.append(task_ids)
        return xcoms[task_ids]

    ti = SimpleNamespace(dag_id="handoff", run_id="manual__1", task_id=task.task_id, try_number=1, xcom_pull=xcom_pull)
    return dict(task.execute({"ti": ti, "dag": dag, "task": task, "params": {"action": "apply"}}))


def recorded(folder: Path) -> dict[str, set[str | None]]:
    found: dict[str, set[str | None]] = {}
    for entry in commands.history(folder)["entries"]:
        found.setdefault(entry["change_id"], set()).add(entry["risk"])
    return found


def test_one_xcom_read_with_the_plans_token_and_risk(changes: Path, sqlite_target: Path) -> None:
    folder = make_pipeline(changes, "handoff", UNITS)
    with commands.workspace(folder) as ws:
        token = ws.lease("handoff/manual__1").try_acquire().token
        a, _ = ws.pipeline.units
    # The analysis says `safe` for both; the plan's label shows which one the task recorded.
    pushed = {
        TOKEN_KEY: token,
        "a": {"action": "apply", "risk": "locking", "checksum": a.checksum},
        "b": {"action": "apply", "risk": "locking", "checksum": "a file changed since the plan"},
    }
    pulls: list[str] = []
    assert execute(folder, "a", {"plan": pushed, "lock": token}, pulls)["applied"] == ["a"]
    assert pulls == ["plan"]
    assert execute(folder, "b", {"plan": pushed, "lock": token}, pulls)["applied"] == ["b"]
    assert pulls == ["plan", "plan"]
    assert recorded(folder) == {"a": {"locking"}, "b": {"safe"}}


def test_a_stale_handed_token_falls_back_to_the_lock_tasks(changes: Path, sqlite_target: Path) -> None:
    folder = make_pipeline(changes, "handoff_stale", UNITS)
    with commands.workspace(folder) as ws:  # the plan saw token 1; the lock task ran again since: token 2
        first = ws.lease("handoff/manual__1").try_acquire().token
        ws.leases.force_release(ws.pipeline.id)
        second = ws.lease("handoff/manual__1").try_acquire().token
    assert second != first
    pulls: list[str] = []
    pushed = {TOKEN_KEY: first, "a": {"action": "apply"}}
    assert execute(folder, "a", {"plan": pushed, "lock": second}, pulls)["applied"] == ["a"]
    assert pulls == ["plan", "lock"]
    assert {e["lock_token"] for e in commands.history(folder)["entries"]} == {second}


def test_the_hint_round_trip() -> None:
    from flamingock_provider.core.model import ChangeUnit, NextAction
    from flamingock_provider.core.plan import Decision

    unit = ChangeUnit(
        id="u", author="a", order=1, stage="main", source_file="0001_u.yaml", checksum="c1", kind="template"
    )
    pushed = decisions_to_xcom([Decision(unit, None, NextAction.APPLY)], {"u": {"risk": "rewrite"}})
    assert risks_from_xcom([unit], pushed) == {"u": "rewrite"}
    changed = ChangeUnit(**{**unit.__dict__, "checksum": "c2"})
    assert risks_from_xcom([changed], pushed) == {}
    assert risks_from_xcom([unit], decisions_to_xcom([Decision(unit, None, NextAction.APPLY)])) == {}
    assert handed_token(pushed) is None and handed_token(None) is None
    assert handed_token({**pushed, TOKEN_KEY: 7}) == 7
