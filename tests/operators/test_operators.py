"""The operators on their own: a hand-written DAG, and the rollback task after a worker died."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from flamingock_provider import commands
from flamingock_provider.core.model import Action, State
from flamingock_provider.operators._common import run_info
from tests.conftest import sql_unit
from tests.fixtures.airflow_dags import make_pipeline, run_dag
from tests.fixtures.airflow_env import DAGS_FOLDER

HAND_WRITTEN = '''
"""A hand-written Airflow DAG using the Flamingock operators directly."""
from pathlib import Path

from airflow.sdk import DAG

from flamingock_provider.operators.apply import FlamingockApplyOperator
from flamingock_provider.operators.release import FlamingockReleaseOperator
from flamingock_provider.sensors.lock import FlamingockLockSensor

with DAG(dag_id="hand_written", schedule=None) as dag:
    lock = FlamingockLockSensor(task_id="take_lock", pipeline_dir="changes/handmade", mode="poke")
    a = FlamingockApplyOperator(task_id="a", pipeline_dir="changes/handmade", unit_id="a", lock_task_id="take_lock")
    schema = FlamingockApplyOperator(task_id="rest", pipeline_dir="changes/handmade", stage="data", lock_task_id="take_lock")
    release = FlamingockReleaseOperator(task_id="free", pipeline_dir="changes/handmade", lock_task_id="take_lock")
    lock >> a >> schema >> release.as_teardown(setups=lock)

with DAG(dag_id="hand_written_alone", schedule=None) as alone:
    FlamingockApplyOperator(task_id="apply_all_data", pipeline_dir="changes/handmade", stage="data")
'''

UNITS = {
    "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
    "02_data/0002_b.yaml": sql_unit("b", "INSERT INTO a VALUES (1)", "DELETE FROM a"),
    "02_data/0003_c.yaml": sql_unit("c", "INSERT INTO a VALUES (2)", "DELETE FROM a WHERE x = 2"),
}


@pytest.fixture
def hand_written(changes: Path) -> Path:
    path = DAGS_FOLDER / "hand_written.py"
    path.write_text(HAND_WRITTEN)
    yield path
    path.unlink()


def load(path: Path, dag_id: str):  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def test_operators_in_a_hand_written_dag(hand_written: Path, changes: Path, sqlite_target: Path) -> None:
    folder = make_pipeline(changes, "handmade", UNITS)
    run = run_dag(load(hand_written, "hand_written"))
    assert run.state == "success", run.tasks
    assert {c["id"]: c["state"] for c in commands.status(folder)["changes"]} == dict.fromkeys("abc", "APPLIED")
    with sqlite3.connect(sqlite_target) as db:
        assert db.execute("SELECT COUNT(*) FROM a").fetchone() == (2,)
    assert commands.status(folder)["lock"] is None
    alone = run_dag(load(hand_written, "hand_written_alone"))  # takes and frees the lease itself
    assert alone.tasks["apply_all_data"] == "skipped" and commands.status(folder)["lock"] is None


def test_rollback_task_closes_a_dead_unit_then_compensates(changes: Path, sqlite_target: Path) -> None:
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowSkipException

    from flamingock_provider.operators.rollback import FlamingockRollbackOperator

    units = {"01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a", transactional="false")}
    folder = make_pipeline(changes, "deadunit", units)
    with DAG(dag_id="dead", schedule=None) as dag:
        task = FlamingockRollbackOperator(task_id="rollback", pipeline_dir=folder, stage="schema")
    ti = SimpleNamespace(dag_id="dead", run_id="manual__1", task_id="rollback", try_number=1)
    context = {"ti": ti, "dag": dag, "task": task, "params": {"action": "apply"}}
    with pytest.raises(AirflowSkipException, match="no change of this run failed in stage 'schema'"):
        task.execute(context)

    with commands.workspace(folder) as ws:  # the unit's worker died after its change, before APPLIED
        ws.engine(run=run_info(context)).executor.record(ws.pipeline.unit("a"), State.STARTED, Action.APPLY)
    with sqlite3.connect(sqlite_target) as db:
        db.execute("CREATE TABLE a (x INT)")
    result = task.execute(context)
    assert result == {"failed": ["a"], "rolled_back": ["a"]}
    assert [e["state"] for e in commands.history(folder)["entries"]] == ["STARTED", "FAILED", "ROLLED_BACK"]
    with sqlite3.connect(sqlite_target) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'a'").fetchall() == []
    assert commands.status(folder)["lock"] is None


def test_a_unit_task_refuses_to_run_when_its_run_lost_the_lease(changes: Path, sqlite_target: Path) -> None:
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowFailException

    from flamingock_provider.operators.apply import FlamingockApplyOperator

    folder = make_pipeline(changes, "lostlease", UNITS)
    with DAG(dag_id="lost", schedule=None) as dag:
        task = FlamingockApplyOperator(task_id="apply_a", pipeline_dir=folder, unit_id="a", lock_task_id="lock")
    with commands.workspace(folder) as ws:  # this run took the lease (token 1), then lost it to another runner
        token = ws.lease("lost/manual__1").try_acquire().token
        ws.leases.force_release(ws.pipeline.id)
        ws.lease("someone/else").try_acquire()
    ti = SimpleNamespace(
        dag_id="lost", run_id="manual__1", task_id="apply_a", try_number=1, xcom_pull=lambda **kw: token
    )
    context = {"ti": ti, "dag": dag, "task": task, "params": {"action": "apply"}}
    with pytest.raises(AirflowFailException, match="lease lost"):
        task.execute(context)
    assert commands.history(folder)["entries"] == []
    with sqlite3.connect(sqlite_target) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'a'").fetchall() == []
