"""Compensation as a task you can see: roll back what a failed unit of this run left behind.

An adapter over :meth:`Engine.recover`, which owns the rules (what this run left STARTED or FAILED,
the ``on_failure`` scope, what stays for other stages' rollback tasks).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from flamingock_provider.commandline import fix_command
from flamingock_provider.core.plan import action_rule
from flamingock_provider.operators._common import FlamingockTaskMixin, airflow_errors, run_info, run_request
from flamingock_provider.operators.callbacks import TaskInterrupted

if TYPE_CHECKING:
    from airflow.sdk import Context


class FlamingockRollbackOperator(FlamingockTaskMixin, BaseOperator):
    """Compensate a change of this run that failed, in the pipeline's ``on_failure`` scope.

    Its trigger rule is ``one_failed``, which also fires when an upstream task is only
    ``upstream_failed``: the audit log decides. Without a FAILED entry of this run (in ``stage``,
    when given) the task ends skipped. A unit this run left STARTED (its worker died) is recorded
    FAILED first. The task fails when a rollback fails (the unit then needs manual intervention).

    :param pipeline_dir: the pipeline folder, absolute or relative to the DAG file's folder.
    :param stage: compensate only a failure in this stage (one rollback task per stage); None: any.
    :param lock_task_id: the lock sensor whose lease this task adopts; None: take the lease itself.
    """

    template_fields: Sequence[str] = ("member",)  # a fleet member: the wave group's mapped argument
    ui_color = "#fce8e6"

    def __init__(
        self,
        *,
        pipeline_dir: str | os.PathLike[str],
        stage: str | None = None,
        lock_task_id: str | None = None,
        member: Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", "one_failed")
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self._init_pipeline(pipeline_dir, member)
        self.stage = stage
        self.lock_task_id = lock_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        request = run_request(context)
        if not action_rule(request.action).applies:
            raise AirflowSkipException(f"action is {request.action!r}: nothing to compensate")
        run = run_info(context)
        where = f" in stage {self.stage!r}" if self.stage else ""
        with airflow_errors(), self.workspace(context) as ws:
            probe = ws.engine(run=run)  # this run's own entries: its unit tasks have all ended
            if not probe.failures_of_this_run(probe.snapshot(), self.stage):
                raise AirflowSkipException(f"no change of this run failed{where}: nothing to compensate")
            with self.run_lease(context, ws, self.lock_task_id) as lease:
                engine = ws.engine(lease=lease, run=run, renderer=self.renderer(context))
                outcome = engine.recover(self.stage, interrupted=TaskInterrupted)
        self.log.info("compensated %s after %s failed", outcome.rolled_back or "nothing", outcome.failed)
        if outcome.rollback_failed:
            raise AirflowFailException(
                f"compensation failed for {', '.join(outcome.rollback_failed)} (ROLLBACK_FAILED): check the target, "
                f"then record each as rolled back (or applied): "
                + "; ".join(f"`{fix_command(ws.pipeline_dir, cid, 'rolled-back')}`" for cid in outcome.rollback_failed)
            )
        return {"failed": outcome.failed, "rolled_back": outcome.rolled_back}
