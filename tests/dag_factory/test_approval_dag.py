"""The approve task in a pipeline's DAG (SPEC §10, §14): where it sits, who reads its answer, when it asks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flamingock_provider import build_dag, commands
from flamingock_provider.exceptions import PipelineValidationError
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree
from tests.fixtures.airflow_dags import load_dag, make_pipeline, run_dag

UNITS = {
    "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
    "02_data/0002_b.yaml": sql_unit("b", "INSERT INTO a VALUES (1)", "DELETE FROM a WHERE x = 1"),
}


def pipeline(tmp_path: Path, required: str, name: str = "gated") -> Path:
    yaml = WAREHOUSE_PIPELINE + f"approval: {{required: {required}, timeout_hours: 0.5}}\n"
    return write_tree(tmp_path / name, {"pipeline.yaml": yaml, **UNITS})


def test_the_approve_task_sits_between_plan_and_every_change(tmp_path: Path) -> None:
    dag = build_dag(pipeline(tmp_path, "destructive"))
    approve = dag.get_task("approve")
    assert set(approve.upstream_task_ids) == {"plan"}
    assert set(dag.get_task("schema.apply_a").upstream_task_ids) == {"approve"}
    assert set(dag.get_task("undo").upstream_task_ids) == {"approve"}
    assert set(dag.get_task("data.apply_b").upstream_task_ids) == {"schema.apply_a"}
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    assert isinstance(approve, ApprovalOperator) and approve.fail_on_reject is True
    assert approve.response_timeout is not None and approve.response_timeout.total_seconds() == 1800
    assert "note" in approve.params
    readers = {t.task_id for t in dag.tasks if getattr(t, "approve_task_id", None) == "approve"}
    undo_tasks = {"undo", "undo_stages.schema", "undo_stages.data"}  # the entry check and each stage's undo
    assert readers == {"schema.apply_a", "data.apply_b", "schema.rollback", "data.rollback", *undo_tasks}


def test_without_approval_there_is_no_approve_task(tmp_path: Path) -> None:
    dag = build_dag(pipeline(tmp_path, "never"))
    assert "approve" not in dag.task_dict
    assert set(dag.get_task("schema.apply_a").upstream_task_ids) == {"plan"}
    assert not any(getattr(t, "approve_task_id", None) for t in dag.tasks)


def test_an_airflow_without_the_hitl_operator_is_a_parse_error_naming_pipeline_and_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What Airflow < 3.1 looks like to the builder: the human-in-the-loop module cannot be imported.
    monkeypatch.setitem(sys.modules, "airflow.providers.standard.operators.hitl", None)
    monkeypatch.delitem(sys.modules, "flamingock_provider.operators.approve", raising=False)
    with pytest.raises(PipelineValidationError) as info:
        build_dag(pipeline(tmp_path, "always"))
    issue = info.value.issues[0]
    assert issue.file == "pipeline.yaml"
    assert "field 'approval.required'" in issue.message and "Airflow 3.1+" in issue.message
    assert "pipeline 'gated'" in issue.message


@pytest.mark.slow
def test_nothing_needing_approval_passes_straight_through(changes: Path, sqlite_target: Path) -> None:
    yaml = WAREHOUSE_PIPELINE + "approval: {required: destructive}\n"
    folder = make_pipeline(changes, "passthrough", UNITS, yaml)  # a create and an insert: nothing destructive
    run = run_dag(load_dag("flamingock_passthrough"))
    assert run.state == "success", run.tasks
    assert run.states("plan", "approve", "schema.apply_a", "data.apply_b") == ["success"] * 4
    entries = commands.history(folder)["entries"]
    assert len(entries) == 4 and all(e["approved_by"] is None and e["approval_note"] is None for e in entries)
    assert all(e["bundle_version"] is None for e in entries)  # the DAGs folder is a LocalDagBundle: unversioned


def test_a_fleet_member_is_asked_in_its_own_wave_group(tmp_path: Path) -> None:
    """Each member's approval is its own map index of ``wave_<n>.approve`` (a canary is approved first)."""
    fleet = "fleet:\n  members:\n    - {name: acme, targets: {warehouse: acme_db}}\n  waves: [1, rest]\n"
    yaml = WAREHOUSE_PIPELINE + "approval: {required: destructive}\n" + fleet
    dag = build_dag(write_tree(tmp_path / "gatedfleet", {"pipeline.yaml": yaml, **UNITS}))
    for wave in ("wave_1", "wave_2"):
        approve = dag.get_task(f"{wave}.approve")
        assert set(approve.upstream_task_ids) == {f"{wave}.plan", f"{wave}_members"}  # the list it maps over
        assert approve.task_group.group_id == wave and type(approve.task_group).__name__ == "MappedTaskGroup"
        assert dag.get_task(f"{wave}.schema.apply_a").approve_task_id == f"{wave}.approve"
