"""Helpers for the Airflow tests: write a pipeline, load its DAG as Airflow would, run it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.airflow.conftest import DAGS_FOLDER
from tests.conftest import WAREHOUSE_PIPELINE, write_tree

LOADER = DAGS_FOLDER / "flamingock_dags.py"


def make_pipeline(root: Path, name: str, files: dict[str, str], pipeline_yaml: str = WAREHOUSE_PIPELINE) -> Path:
    """Write a pipeline folder ``root/name``; ``pipeline.yaml`` is the SQLite warehouse by default."""
    return write_tree(root / name, {"pipeline.yaml": pipeline_yaml, **files})


def load_dag(dag_id: str) -> Any:
    """Parse the loader file with a DagBag, as the DAG processor does, and return one DAG."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(LOADER))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


@dataclass
class Run:
    state: str
    tasks: dict[str, str | None]
    run_id: str

    def states(self, *task_ids: str) -> list[str | None]:
        return [self.tasks[task_id] for task_id in task_ids]


def run_dag(dag: Any, **conf: Any) -> Run:
    """Run ``dag`` once with ``dag.test``; conf is always passed (dag.test keeps the last one otherwise)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    dr = dag.test(run_conf={"action": "apply", "undo_to": None, **conf})
    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == dr.run_id)
        tasks = {ti.task_id: (str(ti.state) if ti.state else None) for ti in tis}
    return Run(str(dr.state), tasks, dr.run_id)
