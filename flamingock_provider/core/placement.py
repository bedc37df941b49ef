"""Where a pipeline's audit log may live: the embedded store serves one machine only (SPEC §3).

The embedded SQLite file sits in each machine's ``$FLAMINGOCK_HOME``. Under a distributed executor
(Celery, Kubernetes, Edge) the tasks of one run land on different machines, and each would keep its
own audit log and its own lease: units applied once per machine. The Airflow adapter reads the
executor from Airflow's configuration and hands the setting to :func:`check_audit_placement`.
"""

from __future__ import annotations

from flamingock_provider.core.model import Pipeline
from flamingock_provider.exceptions import EmbeddedStoreError

# Executors whose tasks all run on the scheduler's machine; any other (Celery, Kubernetes, Edge, a
# custom class) may place the tasks of one run on several machines.
LOCAL_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})


def executor_names(setting: str) -> tuple[str, ...]:
    """The class names in an Airflow ``[core] executor`` setting: a comma list of names, aliases, module paths."""
    entries = (entry.strip() for entry in setting.split(","))
    return tuple(entry.rpartition(":")[2].rpartition(".")[2] for entry in entries if entry)


def distributed_executors(setting: str | None) -> tuple[str, ...]:
    """The executors of ``setting`` that may run a run's tasks on several machines (empty: all local)."""
    return tuple(name for name in executor_names(setting or "") if name not in LOCAL_EXECUTORS)


def check_audit_placement(pipeline: Pipeline, executor: str | None) -> None:
    """Refuse the embedded audit store when ``executor`` (Airflow's setting) is distributed.

    Several executors configured at once count as distributed when any of them is: a task may name it.
    """
    if pipeline.audit.conn_id is None and distributed_executors(executor):
        raise EmbeddedStoreError(str(pipeline.path / "pipeline.yaml"), executor or "")
