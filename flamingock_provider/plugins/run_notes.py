"""A listener that gives every Flamingock DAG run a note saying what it does: ``apply``, ``plan``, ``undo to X``.

Airflow 3.3 shows a run's note in the grid and in the runs list. A task cannot write its own run's
note (the execution API a task talks to offers no such call; only the REST API, which needs a
user's token, can), so the scheduler does it: Airflow calls ``on_dag_run_running`` there when the
run starts, inside the scheduler's session, and the note is committed with the run's new state.
A note someone already gave the run (the trigger form, the REST API) is kept.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

from flamingock_provider.core.plan import run_label

log = logging.getLogger("flamingock.notes")


def is_flamingock_run(dag_run: Any) -> bool:
    """True for a run of a DAG the provider built (tag ``flamingock``, or the ``flamingock_`` DAG id)."""
    if str(getattr(dag_run, "dag_id", "")).startswith("flamingock_"):
        return True
    tags = getattr(getattr(dag_run, "dag_model", None), "tags", None) or ()
    return any(getattr(tag, "name", tag) == "flamingock" for tag in tags)


def note_for(conf: dict[str, Any] | None) -> str:
    """The note of a run triggered with ``conf`` (a scheduled run has none: it applies)."""
    conf = conf or {}
    undo_to = conf.get("undo_to")
    return run_label(conf.get("action"), str(undo_to) if undo_to else None)


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    try:
        if not is_flamingock_run(dag_run) or dag_run.note:
            return
        dag_run.note = note_for(dag_run.conf)
    except Exception:  # a listener must never stop the scheduler
        log.warning("could not set the note of %s", getattr(dag_run, "run_id", "?"), exc_info=True)
