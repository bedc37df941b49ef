"""Apply one change unit, or every unit of one stage, under the run's lease.

The task ends ``skipped`` when it has nothing to do (already applied, ``when:`` false, or the run's
action is not ``apply``), so the grid shows what ran. It never compensates: a failure is recorded
FAILED and the task fails; the stage's rollback task compensates where everyone can see it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from flamingock_provider.core.engine import Engine, RunResult
from flamingock_provider.core.lease import Lease
from flamingock_provider.core.model import ChangeUnit, NextAction, Pipeline, Stage
from flamingock_provider.core.plan import Decision
from flamingock_provider.exceptions import BlockedError, UsageError
from flamingock_provider.operators._common import (
    FlamingockTaskMixin,
    airflow_errors,
    run_info,
    run_request,
)
from flamingock_provider.operators.callbacks import record_interrupted_unit
from flamingock_provider.operators.plan import decisions_from_xcom, stage_key

if TYPE_CHECKING:
    from airflow.sdk import Context

    from flamingock_provider.commands import Workspace


class FlamingockApplyOperator(FlamingockTaskMixin, BaseOperator):
    """Apply one change unit (``unit_id``) or one stage's units in order (``stage``).

    :param pipeline_dir: the pipeline folder, absolute or relative to the DAG file's folder.
    :param unit_id: the change to apply.
    :param stage: apply this stage's units instead (``task_per_stage`` mode).
    :param lock_task_id: the lock sensor whose lease token this task adopts; None: take the lease
        itself for the duration of the task (a hand-written DAG without a lock task).
    :param plan_task_id: the plan task whose decisions this task uses; None: read the audit state.
    """

    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        pipeline_dir: str | os.PathLike[str],
        unit_id: str | None = None,
        stage: str | None = None,
        lock_task_id: str | None = None,
        plan_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if (unit_id is None) == (stage is None):
            raise ValueError("FlamingockApplyOperator needs exactly one of unit_id= or stage=")
        kwargs.setdefault("retries", 0)
        callbacks = kwargs.pop("on_failure_callback", None) or []
        callbacks = list(callbacks) if isinstance(callbacks, Sequence) else [callbacks]
        super().__init__(on_failure_callback=[*callbacks, record_interrupted_unit], **kwargs)
        self._init_pipeline(pipeline_dir)
        self.unit_id = unit_id
        self.stage = stage
        self.lock_task_id = lock_task_id
        self.plan_task_id = plan_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        request = run_request(context)
        if request.action != "apply":
            raise AirflowSkipException(f"action is {request.action!r}: no change is applied")
        with airflow_errors(), self.hook(context).workspace() as ws:
            stage, units = self._units(ws.pipeline)
            engine = ws.engine(run=run_info(context), renderer=self.renderer(context))
            if not engine.condition_true(stage.when):
                raise AirflowSkipException(f"stage {stage.name!r}: when {stage.when!r} is false; skipped")
            decisions = self._decisions(context, stage, engine)
            _refuse_blocked(stage, decisions)
            if all(_nothing_to_do(decisions[u.id]) for u in units):
                raise AirflowSkipException(f"nothing to do: {', '.join(u.id for u in units)} already applied")
            with self.run_lease(context, ws, self.lock_task_id) as lease:
                result = self._apply(ws, lease, context, units, decisions)
        if not result.done:
            raise AirflowSkipException(
                f"nothing to do: {', '.join(result.skipped)} skipped (already applied or when: false)"
            )
        return {"applied": result.done, "skipped": result.skipped}

    def _units(self, pipeline: Pipeline) -> tuple[Stage, tuple[ChangeUnit, ...]]:
        try:
            if self.unit_id is not None:
                unit = pipeline.unit(self.unit_id)
                return pipeline.stage(unit.stage), (unit,)
            stage = pipeline.stage(self.stage or "")
        except KeyError as err:
            raise UsageError(
                f"pipeline {pipeline.id!r} has no {'change' if self.unit_id else 'stage'} {err.args[0]!r}; "
                f"the DAG is out of date with its folder: let Airflow re-parse it"
            ) from err
        return stage, stage.units

    def _decisions(self, context: Context, stage: Stage, engine: Engine) -> dict[str, Decision]:
        """Use the plan task's decisions on a first try; read the audit state on a retry or alone."""
        first_try = (context["ti"].try_number or 1) <= 1
        if self.plan_task_id is not None and first_try:
            pushed = context["ti"].xcom_pull(task_ids=self.plan_task_id, key=stage_key(stage.name))
            if pushed:
                return decisions_from_xcom(stage.units, pushed)
        return {d.unit.id: d for d in engine.plan()}

    def _apply(
        self,
        ws: Workspace,
        lease: Lease,
        context: Context,
        units: Sequence[ChangeUnit],
        decisions: Mapping[str, Decision],
    ) -> RunResult:
        engine = ws.engine(lease=lease, run=run_info(context), renderer=self.renderer(context))
        result = RunResult(ws.pipeline.id)
        for unit in units:
            if not engine.run_unit(unit, decisions[unit.id], result, compensate=False):
                failed = result.failed or {}
                raise AirflowFailException(
                    f"change {unit.id!r} ({unit.source_file}) failed: {failed.get('error')}; it is recorded FAILED "
                    f"and the stage's rollback task compensates. Fix the unit and trigger the DAG again"
                )
        return result


def _refuse_blocked(stage: Stage, decisions: Mapping[str, Decision]) -> None:
    """A blocked unit stops its whole stage before anything in it runs."""
    for unit in stage.units:
        decision = decisions.get(unit.id)
        if decision is not None and decision.action is NextAction.BLOCKED:
            raise BlockedError(
                unit.id, decision.state.value if decision.state else None, decision.reason, decision.fix or ""
            )


def _nothing_to_do(decision: Decision) -> bool:
    return decision.action is NextAction.SKIP and not decision.reconcile
