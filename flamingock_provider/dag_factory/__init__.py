"""Pipeline folder → Airflow DAG or TaskGroup: ``build_dag``, ``build_task_group``, ``build_dags``."""

from flamingock_provider.dag_factory.builder import build_dag, build_task_group
from flamingock_provider.dag_factory.loader import build_dags

__all__ = ["build_dag", "build_dags", "build_task_group"]
