"""flamingock_provider: versioned, audited, lock-protected changes run by Apache Airflow 3.

``from flamingock_provider import build_dag, build_task_group, build_dags`` loads the DAG factory
(and Airflow) on first use only: importing the package, its core and its CLI never imports Airflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flamingock_provider.dag_factory import build_dag, build_dags, build_task_group

__all__ = ["build_dag", "build_dags", "build_task_group"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from flamingock_provider import dag_factory

        return getattr(dag_factory, name)
    raise AttributeError(f"module 'flamingock_provider' has no attribute {name!r}")
