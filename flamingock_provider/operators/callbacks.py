"""Task callbacks: a unit task that died without recording its outcome still leaves FAILED.

When a worker is killed the task never reaches its own audit write; Airflow then runs the task's
failure callback (in the worker, or in the DAG processor after a heartbeat timeout). The callback
closes the unit's STARTED entry of this run, and only that: a task that recorded FAILED itself,
or a unit another run touched since, is left alone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flamingock_provider.exceptions import FlamingockError, LeaseError

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger("flamingock")


class TaskInterrupted(RuntimeError):
    """The unit's task ended without recording a result (worker killed, timed out or lost)."""


def record_interrupted_unit(context: Context) -> None:
    """Write FAILED (or APPLIED when its transaction committed) for units this run left STARTED."""
    task: Any = context.get("task")
    if task is None or not hasattr(task, "resolve_pipeline_dir"):
        return
    from flamingock_provider.operators._common import run_info, run_owner

    cause = context.get("exception")
    if isinstance(cause, LeaseError) or isinstance(getattr(cause, "__cause__", None), LeaseError):
        return  # a run that lost its lease writes nothing more
    error = TaskInterrupted(
        f"task {task.task_id} ended without recording a result"
        + (f": {type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else "")
    )
    try:
        with task.workspace(context) as ws:
            holder = ws.leases.current(ws.pipeline.audit_key)
            if holder is not None and holder.owner != run_owner(context):
                log.error("lease of %s is held by %s: audit entries left as they are", ws.pipeline.id, holder.owner)
                return
            engine = ws.engine(run=run_info(context))
            units = [ws.pipeline.unit(task.unit_id)] if task.unit_id else ws.pipeline.stage(task.stage).units
            for unit in units:
                entry = engine.record_interrupted(unit, error)
                if entry is not None:
                    log.warning("change %s was left STARTED by this run: recorded %s", unit.id, entry.state.value)
    except (FlamingockError, KeyError) as err:
        log.error("could not close the audit entries of %s: %s", task.task_id, err)
