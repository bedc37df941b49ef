"""Compensation as a task you can see: roll back what a failed unit of this run left behind."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from flamingock_provider.core.model import AuditEntry, State
from flamingock_provider.operators._common import FlamingockTaskMixin, airflow_errors, run_info, run_request
from flamingock_provider.operators.callbacks import TaskInterrupted

if TYPE_CHECKING:
    from airflow.sdk import Context

    from flamingock_provider.core.engine import Engine
    from flamingock_provider.core.executor import RunInfo


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

    ui_color = "#fce8e6"

    def __init__(
        self,
        *,
        pipeline_dir: str | os.PathLike[str],
        stage: str | None = None,
        lock_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", "one_failed")
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self._init_pipeline(pipeline_dir)
        self.stage = stage
        self.lock_task_id = lock_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        request = run_request(context)
        if request.action != "apply":
            raise AirflowSkipException(f"action is {request.action!r}: nothing to compensate")
        run = run_info(context)
        with airflow_errors(), self.hook(context).workspace() as ws:
            probe = ws.engine(run=run)
            mine = self._mine(probe.snapshot(), run)
            if not any(e.state in (State.FAILED, State.STARTED) for e in mine.values()):
                raise AirflowSkipException(f"no change of this run failed{self._where()}: nothing to compensate")
            with self.run_lease(context, ws, self.lock_task_id) as lease:
                engine = ws.engine(lease=lease, run=run, renderer=self.renderer(context))
                snapshot = self._close_interrupted(engine, mine)
                failed = [cid for cid, e in self._mine(snapshot, run).items() if e.state is State.FAILED]
                rolled = engine.compensate(self._only_my_failures(snapshot, run))
                self._check_rollbacks(engine, run)
        self.log.info("compensated %s after %s failed", rolled or "nothing", failed)
        return {"failed": failed, "rolled_back": rolled}

    def _where(self) -> str:
        return f" in stage {self.stage!r}" if self.stage else ""

    def _mine(self, snapshot: Mapping[str, AuditEntry], run: RunInfo) -> dict[str, AuditEntry]:
        return {
            cid: e
            for cid, e in snapshot.items()
            if e.execution_id == run.execution_id and (self.stage is None or e.stage == self.stage)
        }

    def _close_interrupted(self, engine: Engine, mine: Mapping[str, AuditEntry]) -> Mapping[str, AuditEntry]:
        """Record FAILED for units of this run whose task died while STARTED; return the new snapshot."""
        started = [cid for cid, e in mine.items() if e.state is State.STARTED]
        for cid in started:
            engine.record_interrupted(
                engine.pipeline.unit(cid), TaskInterrupted(f"the task of {cid} died while STARTED")
            )
        return engine.snapshot()

    def _only_my_failures(self, snapshot: Mapping[str, AuditEntry], run: RunInfo) -> dict[str, AuditEntry]:
        """Hide other stages' failures of this run: their own rollback tasks compensate them."""
        return {
            cid: e
            for cid, e in snapshot.items()
            if not (
                e.execution_id == run.execution_id
                and e.state is State.FAILED
                and self.stage is not None
                and e.stage != self.stage
            )
        }

    def _check_rollbacks(self, engine: Engine, run: RunInfo) -> None:
        broken = [
            cid
            for cid, e in engine.snapshot().items()
            if e.execution_id == run.execution_id and e.state is State.ROLLBACK_FAILED
        ]
        if broken:
            raise AirflowFailException(
                f"compensation failed for {', '.join(broken)} (ROLLBACK_FAILED): check the target, then run "
                f"`flamingock fix {engine.pipeline_dir} <ID> --as rolled-back` (or --as applied) for each"
            )
