"""The undo task: roll back the changes applied after ``undo_to``, newest first."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from flamingock_provider.operators._common import FlamingockTaskMixin, airflow_errors, run_info, run_request

if TYPE_CHECKING:
    from airflow.sdk import Context


class FlamingockUndoOperator(FlamingockTaskMixin, BaseOperator):
    """Roll back applied changes after the run's ``undo_to`` param (or ``undo_to=``), newest first.

    Runs only when the run's ``action`` is ``undo``; otherwise it ends skipped.

    :param pipeline_dir: the pipeline folder, absolute or relative to the DAG file's folder.
    :param undo_to: the change id to roll back to; default: the run's ``undo_to`` param.
    :param lock_task_id: the lock sensor whose lease this task adopts; None: take the lease itself.
    """

    template_fields = ("undo_to",)
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        pipeline_dir: str | os.PathLike[str],
        undo_to: str | None = None,
        lock_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self._init_pipeline(pipeline_dir)
        self.undo_to = undo_to
        self.lock_task_id = lock_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        request = run_request(context)
        if request.action != "undo":
            raise AirflowSkipException(f"action is {request.action!r}: nothing to undo")
        target = self.undo_to or request.undo_to
        run = run_info(context)
        with (
            airflow_errors(),
            self.hook(context).workspace() as ws,
            self.run_lease(context, ws, self.lock_task_id) as lease,
        ):
            result = ws.engine(lease=lease, run=run, renderer=self.renderer(context)).undo(to=target)
        if result.failed:
            raise AirflowFailException(
                f"undo stopped: rolling back {result.failed['id']!r} failed: {result.failed['error']}; "
                f"rolled back before it: {result.done or 'nothing'}. Check the target and `flamingock status`"
            )
        if not result.done:
            raise AirflowSkipException(f"nothing to undo: no change applied after {target!r}")
        return result.to_json()
