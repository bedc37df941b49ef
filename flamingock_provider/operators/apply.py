"""Apply one change unit, or every unit of one stage, under the run's lease.

An adapter over :meth:`Engine.run_stage`, which decides from the audit state it reads under the
lease. The task ends ``skipped`` when it has nothing to do (already applied, ``when:`` false, or the
run's action is not ``apply``), so the grid shows what ran. It never compensates: a failure is
recorded FAILED and the task fails; the stage's rollback task compensates where everyone can see it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from flamingock_provider.core.engine import RunResult
from flamingock_provider.core.model import ChangeUnit, Pipeline, Stage
from flamingock_provider.core.plan import action_rule, hinted_done
from flamingock_provider.exceptions import BlockedError, UsageError
from flamingock_provider.operators._common import (
    FlamingockTaskMixin,
    airflow_errors,
    pull,
    run_info,
    run_request,
)
from flamingock_provider.operators._profile import profiled
from flamingock_provider.operators.callbacks import record_interrupted_unit
from flamingock_provider.operators.plan import decisions_from_xcom, handed_token, risks_from_xcom, stage_key

if TYPE_CHECKING:
    from airflow.sdk import Context


class FlamingockApplyOperator(FlamingockTaskMixin, BaseOperator):
    """Apply one change unit (``unit_id``) or one stage's units in order (``stage``).

    :param pipeline_dir: the pipeline folder, absolute or relative to the DAG file's folder.
    :param unit_id: the change to apply.
    :param stage: apply this stage's units instead (``task_per_stage`` mode).
    :param lock_task_id: the lock sensor whose lease token this task adopts; None: take the lease
        itself for the duration of the task (a hand-written DAG without a lock task).
    :param plan_task_id: the plan task whose decisions this task uses; None: read the audit state.
    """

    template_fields: Sequence[str] = ("member",)  # a fleet member: the wave group's mapped argument
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        pipeline_dir: str | os.PathLike[str],
        unit_id: str | None = None,
        stage: str | None = None,
        lock_task_id: str | None = None,
        plan_task_id: str | None = None,
        member: Any = None,
        **kwargs: Any,
    ) -> None:
        if (unit_id is None) == (stage is None):
            raise ValueError("FlamingockApplyOperator needs exactly one of unit_id= or stage=")
        kwargs.setdefault("retries", 0)
        callbacks = kwargs.pop("on_failure_callback", None) or []
        callbacks = list(callbacks) if isinstance(callbacks, Sequence) else [callbacks]
        super().__init__(on_failure_callback=[*callbacks, record_interrupted_unit], **kwargs)
        self._init_pipeline(pipeline_dir, member)
        self.unit_id = unit_id
        self.stage = stage
        self.lock_task_id = lock_task_id
        self.plan_task_id = plan_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        started = time.perf_counter()
        ti = context["ti"]
        try:
            with profiled(f"{ti.dag_id}.{ti.task_id}.{ti.try_number}"):
                return self._execute(context)
        finally:  # what the task itself costs, apart from the worker start and the DAG parse
            self.log.info("execute took %.1f ms", (time.perf_counter() - started) * 1000)

    def _execute(self, context: Context) -> dict[str, Any]:
        request = run_request(context)
        if not action_rule(request.action).applies:
            raise AirflowSkipException(f"action is {request.action!r}: no change is applied")
        with airflow_errors(), self.workspace(context) as ws:
            stage, units = self._units(ws.pipeline)
            pushed = self._pushed(context, stage)
            if pushed and hinted_done(units, decisions_from_xcom(units, pushed)):  # a hint may skip, never run
                raise AirflowSkipException(f"nothing to do: {', '.join(u.id for u in units)} already applied")
            with self.run_lease(context, ws, self.lock_task_id, handed_token(pushed)) as lease:
                run, renderer = run_info(context), self.renderer(context)
                risks = risks_from_xcom(units, pushed) if pushed else None
                engine = ws.engine(lease=lease, run=run, renderer=renderer, risks=risks)
                result = engine.run_stage(stage, units=units, compensate=False)
            return _outcome(result, units)

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

    def _pushed(self, context: Context, stage: Stage) -> dict[str, Any] | None:
        """What the plan task pushed for this stage, on a first try only (a retry decides afresh)."""
        if self.plan_task_id is None or (context["ti"].try_number or 1) > 1:
            return None
        pushed = pull(context, self.plan_task_id, stage_key(stage.name))
        return dict(pushed) if pushed else None


def _outcome(result: RunResult, units: Sequence[ChangeUnit]) -> dict[str, Any]:
    """Turn the engine's result for this task's units into the task's end state."""
    if result.blocked is not None:
        blocked = result.blocked
        raise BlockedError(blocked["id"], blocked["state"], blocked["reason"], blocked["fix"] or "")
    if result.failed is not None:
        unit = next(u for u in units if u.id == result.failed["id"])
        raise AirflowFailException(
            f"change {unit.id!r} ({unit.source_file}) failed: {result.failed['error']}; it is recorded FAILED "
            f"and the stage's rollback task compensates. Fix the unit and trigger the DAG again"
        )
    if not result.done:
        reasons = "; ".join(f"{cid}: {result.notes.get(cid, 'skipped')}" for cid in result.skipped)
        raise AirflowSkipException(f"nothing to do: {reasons}")
    return {"applied": result.done, "skipped": result.skipped}
