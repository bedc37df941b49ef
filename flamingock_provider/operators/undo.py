"""The undo tasks: roll back the changes applied after ``undo_to``, newest first.

One task can do the whole undo (a hand-written DAG). The pipeline DAG splits it so that the grid
shows what each stage did: the ``undo`` entry task checks the whole undo under the lease before
anything changes (``check_only``), then one ``<stage>.undo`` task per stage, newest stage first,
rolls back that stage's share (``stage``); a stage with nothing to undo ends skipped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from flamingock_provider.core.model import ChangeUnit
from flamingock_provider.core.plan import action_rule
from flamingock_provider.operators._common import FlamingockTaskMixin, airflow_errors, run_info, run_request

if TYPE_CHECKING:
    from airflow.sdk import Context


class FlamingockUndoOperator(FlamingockTaskMixin, BaseOperator):
    """Roll back applied changes after the run's ``undo_to`` param (or ``undo_to=``), newest first.

    Runs only when the run's ``action`` is ``undo``; otherwise it ends skipped.

    :param pipeline_dir: the pipeline folder, absolute or relative to the DAG file's folder.
    :param undo_to: the change id to roll back to; default: the run's ``undo_to`` param.
    :param lock_task_id: the lock sensor whose lease this task adopts; None: take the lease itself.
    :param stage: roll back only this stage's changes (the stages' tasks run newest stage first).
    :param check_only: change nothing: check under the lease that the undo can be done, and say what it
        rolls back; skipped when there is nothing to undo.
    """

    template_fields = ("undo_to", "member")
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        pipeline_dir: str | os.PathLike[str],
        undo_to: str | None = None,
        lock_task_id: str | None = None,
        stage: str | None = None,
        check_only: bool = False,
        member: Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self._init_pipeline(pipeline_dir, member)
        self.undo_to = undo_to
        self.lock_task_id = lock_task_id
        self.stage = stage
        self.check_only = check_only

    def execute(self, context: Context) -> dict[str, Any]:
        request = run_request(context)
        if not action_rule(request.action).undoes:
            raise AirflowSkipException(f"action is {request.action!r}: nothing to undo")
        target = self.undo_to or request.undo_to
        with (
            airflow_errors(),
            self.workspace(context) as ws,
            self.run_lease(context, ws, self.lock_task_id) as lease,
        ):
            engine = ws.engine(lease=lease, run=run_info(context), renderer=self.renderer(context))
            if self.check_only:
                units = engine.undo_targets(to=target)
                engine.require_approval(units, "undo")  # refused here, before any stage's undo task starts
                return self._check(units, target)
            result = engine.undo(to=target, stage=self.stage)
        where = f" in stage {self.stage!r}" if self.stage else ""
        if result.failed:
            raise AirflowFailException(
                f"undo stopped: rolling back {result.failed['id']!r} failed: {result.failed['error']}; "
                f"rolled back before it{where}: {result.done or 'nothing'}. Check the target and `flamingock status`"
            )
        if not result.done:
            raise AirflowSkipException(f"nothing to undo{where}: no change applied after {target!r}")
        self.log.info("rolled back%s, newest first: %s", where, ", ".join(result.done))
        return result.to_json()

    def _check(self, units: Sequence[ChangeUnit], target: str | None) -> dict[str, Any]:
        if not units:
            raise AirflowSkipException(f"nothing to undo: no change applied after {target!r}")
        ids = [u.id for u in units]
        self.log.info("undo to %s rolls back, newest first: %s", target, ", ".join(ids))
        return {"undo_to": target, "rolls_back": ids}
