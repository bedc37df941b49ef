"""The DAG a pipeline folder becomes: groups, order, setup/teardown, parallel stages, params, docs."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from flamingock_provider import build_dag, build_task_group
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree
from tests.fixtures.airflow_env import REPO


def pipeline(tmp_path: Path, files: dict[str, str], extra: str = "", name: str = "shop") -> Path:
    return write_tree(tmp_path / name, {"pipeline.yaml": WAREHOUSE_PIPELINE + extra, **files})


THREE_STAGES = {
    "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)"),
    "01_schema/0002_b.v2.yaml": sql_unit("b.v2", "CREATE TABLE b (x INT)"),
    "02_data/0003_c.yaml": sql_unit("c", "INSERT INTO a VALUES (1)"),
    "03_report/0004_d.yaml": sql_unit("d", "CREATE VIEW d AS SELECT * FROM a"),
}


def upstream(dag, task_id: str) -> set[str]:
    return set(dag.get_task(task_id).upstream_task_ids)


def test_dag_settings_params_and_docs(tmp_path: Path) -> None:
    extra = "description: Shop schema\ntags: [schema]\nschedule: '@daily'\nstart_date: 2025-01-01\n"
    dag = build_dag(pipeline(tmp_path, THREE_STAGES, extra))
    assert dag.dag_id == "flamingock_shop" and dag.max_active_runs == 1 and dag.catchup is False
    assert set(dag.tags) == {"flamingock", "schema"} and dag.start_date == datetime(
        2025, 1, 1, tzinfo=dag.start_date.tzinfo
    )
    assert "Shop schema" in dag.doc_md and "`b.v2`" in dag.doc_md and "Stage `data`" in dag.doc_md
    action = dag.params.get_param("action")
    assert action.value == "apply" and action.schema["enum"] == ["apply", "plan", "undo"]
    assert dag.params.get_param("undo_to").value is None
    assert dag.fileloc == __file__  # the DAG file that called build_dag, not the factory module


def test_groups_order_setup_and_teardown(tmp_path: Path) -> None:
    dag = build_dag(pipeline(tmp_path, THREE_STAGES))
    assert set(dag.task_group.children) >= {"lock", "plan", "schema", "data", "report", "undo", "complete", "release"}
    assert [t.task_id for t in dag.task_group.children["schema"]] == [
        "schema.apply_a",
        "schema.apply_b_v2",
        "schema.rollback",
    ]
    # in a group of their own, newest stage first (inside the stage groups they would make a group cycle)
    undo_group = dag.task_group.children["undo_stages"]
    assert [t.task_id for t in undo_group] == ["undo_stages.report", "undo_stages.data", "undo_stages.schema"]
    dag.task_group.topological_sort()  # the grid draws groups in this order: no cycle between groups
    assert upstream(dag, "plan") == {"lock"}
    assert upstream(dag, "schema.apply_a") == {"plan"}
    assert upstream(dag, "schema.apply_b_v2") == {"schema.apply_a"}
    assert upstream(dag, "data.apply_c") == {"schema.apply_b_v2"}
    assert upstream(dag, "schema.rollback") == {"schema.apply_b_v2"}
    # undo: the entry task checks, then each stage's undo task, newest stage first
    assert upstream(dag, "undo") == {"plan"} and upstream(dag, "undo_stages.report") == {"undo"}
    assert upstream(dag, "undo_stages.data") == {"undo", "undo_stages.report"} and upstream(
        dag, "undo_stages.schema"
    ) == {
        "undo",
        "undo_stages.data",
    }
    assert {"undo", "undo_stages.report", "undo_stages.data", "undo_stages.schema"} <= upstream(dag, "complete")
    assert (
        dag.get_task("undo_stages.data").trigger_rule == "none_failed"
        and dag.get_task("undo_stages.data").stage == "data"
    )
    lock, release = dag.get_task("lock"), dag.get_task("release")
    assert lock.is_setup and release.is_teardown and "lock" in release.upstream_task_ids
    assert {"complete", "undo", "schema.rollback", "report.apply_d"} <= upstream(dag, "release")
    assert dag.get_task("schema.apply_b_v2").trigger_rule == "none_failed"
    assert dag.get_task("schema.rollback").trigger_rule == "one_failed"
    complete = dag.get_task("complete")
    from airflow.sdk import Asset

    assert complete.trigger_rule == "none_failed" and complete.outlets == [Asset("flamingock://shop")]
    assert "author: tester" in dag.get_task("schema.apply_a").doc_md


def test_depends_on_runs_independent_stages_in_parallel(tmp_path: Path) -> None:
    files = {
        **THREE_STAGES,
        "02_data/stage.yaml": "depends_on: [schema]\n",
        "03_report/stage.yaml": "depends_on: [schema]\nrun_after_failure: false\n",
    }
    dag = build_dag(pipeline(tmp_path, files))
    assert upstream(dag, "data.apply_c") == {"schema.apply_b_v2"}
    assert upstream(dag, "report.apply_d") == {"schema.apply_b_v2"}  # not after data: parallel


def test_run_after_failure_stage_runs_after_compensation(tmp_path: Path) -> None:
    files = {**THREE_STAGES, "02_data/stage.yaml": "run_after_failure: true\n"}
    dag = build_dag(pipeline(tmp_path, files))
    first = dag.get_task("data.apply_c")
    assert first.trigger_rule == "all_done" and upstream(dag, "data.apply_c") == {
        "schema.apply_b_v2",
        "schema.rollback",
    }
    # the stage after the clean-up one still must not run after the earlier failure
    assert upstream(dag, "report.apply_d") == {"data.apply_c", "schema.apply_b_v2"}


def test_task_per_stage_mode(tmp_path: Path) -> None:
    dag = build_dag(pipeline(tmp_path, THREE_STAGES, "run_mode: task_per_stage\n"))
    assert [t.task_id for t in dag.task_group.children["schema"]] == ["schema.apply", "schema.rollback"]
    assert dag.get_task("schema.apply").stage == "schema" and upstream(dag, "data.apply") == {"schema.apply"}


def test_asset_schedule_and_overrides(tmp_path: Path) -> None:
    extra = "schedule: ['s3://lake/raw', 'flamingock://other']\n"
    dag = build_dag(pipeline(tmp_path, THREE_STAGES, extra), tags=["team"], dag_id="custom", max_active_runs=2)
    assert dag.dag_id == "custom" and dag.max_active_runs == 2 and {"team", "flamingock"} <= set(dag.tags)
    assert "flamingock://other" in str(dag.timetable.asset_condition)


def test_reserved_stage_names_and_unsafe_ids_get_distinct_task_ids(tmp_path: Path) -> None:
    files = {
        "01_plan/0001_a.yaml": sql_unit("x.y", "SELECT 1"),
        "01_plan/0002_b.yaml": sql_unit("x_y", "SELECT 1"),
    }
    dag = build_dag(pipeline(tmp_path, files))
    ids = [t.task_id for t in dag.task_group.children["plan_stage"]]
    assert ids[0] == "plan_stage.apply_x_y" and ids[1].startswith("plan_stage.apply_x_y_") and len(set(ids)) == 3


def test_build_task_group_inside_a_user_dag(tmp_path: Path) -> None:
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    folder = pipeline(tmp_path, THREE_STAGES)
    with DAG(dag_id="etl", schedule=None) as dag:
        group = build_task_group(folder)
        etl = EmptyOperator(task_id="etl")
        group >> etl
    assert group.group_id == "flamingock_shop"
    assert upstream(dag, "etl") == {"flamingock_shop.complete"}
    assert upstream(dag, "flamingock_shop.schema.apply_a") == {"flamingock_shop.plan"}
    assert dag.get_task("flamingock_shop.schema.apply_a").lock_task_id == "flamingock_shop.lock"


def test_operators_keep_the_pipeline_relative_to_the_dag_file(tmp_path: Path) -> None:
    dag = build_dag(pipeline(tmp_path, THREE_STAGES))
    task = dag.get_task("schema.apply_a")
    assert not Path(task.pipeline_ref).is_absolute()
    assert (Path(__file__).parent / task.pipeline_ref).resolve() == (tmp_path / "shop").resolve()


def test_invalid_pipeline_raises_naming_file_and_field(tmp_path: Path) -> None:
    from flamingock_provider.exceptions import PipelineValidationError

    folder = pipeline(tmp_path, {"0001_a.yaml": sql_unit("a", "SELECT 1").replace("template: sql", "template: sqll")})
    with pytest.raises(PipelineValidationError, match=r"0001_a.yaml: field 'template'"):
        build_dag(folder)


def test_importing_the_package_core_and_cli_never_imports_airflow() -> None:
    code = (
        "import sys, flamingock_provider, flamingock_provider.commands, flamingock_provider.cli.main\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'airflow'], 'airflow imported'\n"
        "assert callable(flamingock_provider.build_dags)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_trigger_form_offers_the_change_ids_for_undo_to_and_refuses_others(tmp_path: Path) -> None:
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    dag = build_dag(pipeline(tmp_path, THREE_STAGES))
    undo_to = dag.params.get_param("undo_to")
    assert undo_to.schema["enum"] == [None, "a", "b.v2", "c", "d"] and undo_to.schema["type"] == ["null", "string"]
    assert "only for action 'undo'" in str(undo_to.description)
    assert undo_to.resolve("b.v2") == "b.v2" and undo_to.resolve(None) is None
    with pytest.raises(ParamValidationError):
        undo_to.resolve("b_v2")  # a typo: refused by the form, not by a failed run
    form = ParamsDict(dag.params.dump())
    form.update({"action": "undo", "undo_to": "c"})
    assert form.validate() == {"action": "undo", "undo_to": "c"}
