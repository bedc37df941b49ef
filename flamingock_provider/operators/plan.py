"""The plan task: read the audit state once and hand every unit's next action to the unit tasks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from flamingock_provider.core.model import ChangeUnit, NextAction
from flamingock_provider.core.plan import Decision
from flamingock_provider.operators._common import FlamingockTaskMixin, airflow_errors, run_info, run_request

if TYPE_CHECKING:
    from airflow.sdk import Context


def decisions_to_xcom(decisions: Sequence[Decision]) -> dict[str, dict[str, Any]]:
    """Return the plan as a small JSON-safe dict keyed by change id: a hint for the unit tasks."""
    return {
        d.unit.id: {"action": d.action.value, "state": d.state.value if d.state else None, "reconcile": d.reconcile}
        for d in decisions
    }


def decisions_from_xcom(units: Sequence[ChangeUnit], payload: Mapping[str, Mapping[str, Any]]) -> dict[str, Decision]:
    """Rebuild the hint for ``units`` from what a plan task pushed (see :func:`decisions_to_xcom`).

    Only the action survives: a unit task uses it to skip what was done, and decides everything
    else again from the audit state it reads under the lease.
    """
    return {
        unit.id: Decision(unit, None, NextAction(item["action"]), reconcile=bool(item.get("reconcile")))
        for unit in units
        if (item := payload.get(unit.id)) is not None
    }


def stage_key(stage: str) -> str:
    """The XCom key under which the plan task pushes one stage's decisions."""
    return f"decisions.{stage}"


class FlamingockPlanOperator(FlamingockTaskMixin, BaseOperator):
    """Plan a pipeline run from one audit-store query; log it and push it (XCom) for the unit tasks.

    :param pipeline_dir: the pipeline folder, absolute or relative to the DAG file's folder.
    """

    ui_color = "#e8f0fe"

    def __init__(self, *, pipeline_dir: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_pipeline(pipeline_dir)

    def execute(self, context: Context) -> dict[str, Any]:
        request = run_request(context)
        with airflow_errors(), self.hook(context).workspace() as ws:
            engine = ws.engine(run=run_info(context), renderer=self.renderer(context))
            decisions = engine.plan(engine.snapshot())
            self._log_plan(decisions)
            undo: list[str] = []
            if request.action == "undo" and request.undo_to is not None:
                undo = [u.id for u in engine.undo_targets(to=request.undo_to)]
                self.log.info("undo to %s rolls back, newest first: %s", request.undo_to, undo or "nothing")
        for stage in ws.pipeline.stages:  # one XCom per stage: a unit task reads only its own stage's
            mine = [d for d in decisions if d.unit.stage == stage.name]
            context["ti"].xcom_push(key=stage_key(stage.name), value=decisions_to_xcom(mine))
        return {
            "action": request.action,
            "apply": [d.unit.id for d in decisions if d.action is NextAction.APPLY],
            "blocked": [d.unit.id for d in decisions if d.action is NextAction.BLOCKED],
            "undo": undo,
        }

    def _log_plan(self, decisions: Sequence[Decision]) -> None:
        width = max((len(d.unit.id) for d in decisions), default=10)
        lines = [
            f"{d.unit.stage:>12} {d.unit.id:<{width}} {d.state.value if d.state else '-':<16} {d.action.value}"
            + (f"  ({d.reason})" if d.reason else "")
            for d in decisions
        ]
        self.log.info("plan (stage, change, latest state, next action):\n%s", "\n".join(lines))
