"""The plan task: read the audit state once, hand every unit's next action on, skip what is idle.

It runs after the lock task, so an ``apply`` or ``undo`` run decides under its lease. The tasks that cannot do anything in this run
(:meth:`Engine.skips`: units done or ``when:`` false, the rollback task of a stage none of whose units
runs, the undo tasks outside undo runs and those of stages with nothing to undo) are set ``skipped``
through Airflow's ``SkipMixin``, as a branch operator does, so the scheduler never starts a worker for them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, SkipMixin
from airflow.sdk.exceptions import DownstreamTasksSkipped

from flamingock_provider.core.model import ChangeUnit, NextAction, Pipeline
from flamingock_provider.core.plan import Decision, Skips, action_rule
from flamingock_provider.core.preview import rollbacks
from flamingock_provider.operators._common import FlamingockTaskMixin, airflow_errors, run_info, run_request
from flamingock_provider.targets import open_target
from flamingock_provider.targets.risk import plan_details

if TYPE_CHECKING:
    from airflow.sdk import Context


def decisions_to_xcom(
    decisions: Sequence[Decision], details: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Return the plan as a small JSON-safe dict keyed by change id: a hint for the unit tasks.

    With ``details`` (:func:`plan_details`) each unit also carries its risk level and the checksum
    it was analysed for, so that a unit task records the level without parsing its SQL again.
    """
    pushed: dict[str, dict[str, Any]] = {}
    for d in decisions:
        item = {"action": d.action.value, "state": d.state.value if d.state else None, "reconcile": d.reconcile}
        if details is not None and d.unit.id in details:
            item |= {"risk": details[d.unit.id]["risk"], "checksum": d.unit.checksum}
        pushed[d.unit.id] = item
    return pushed


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


def risks_from_xcom(units: Sequence[ChangeUnit], payload: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The risk levels the plan task analysed for ``units``, for the files unchanged since (same checksum).

    A label for the audit entries, never a decision: a unit missing here is analysed by the task.
    """
    return {
        unit.id: str(item["risk"])
        for unit in units
        if (item := payload.get(unit.id)) is not None and item.get("risk") and item.get("checksum") == unit.checksum
    }


TOKEN_KEY = "@lease_token"  # beside the change ids of a stage's XCom (an id cannot contain '@')


def handed_token(payload: Mapping[str, Any] | None) -> int | None:
    """The lock task's lease token, as the plan task passed it on in a stage's XCom (None if not)."""
    token = payload.get(TOKEN_KEY) if payload else None
    return int(token) if token is not None else None


def stage_key(stage: str) -> str:
    """The XCom key under which the plan task pushes one stage's decisions."""
    return f"decisions.{stage}"


class FlamingockPlanOperator(FlamingockTaskMixin, BaseOperator, SkipMixin):
    """Plan a pipeline run from one audit-store query; push it (XCom) for the unit tasks; skip idle tasks.

    The unit tasks it may skip are the :class:`FlamingockApplyOperator` tasks of its DAG whose
    ``plan_task_id`` is this task. The builder names the others after building them.

    :param pipeline_dir: the pipeline folder, absolute or relative to the DAG file's folder.
    :param lock_task_id: the lock sensor, whose lease token the plan passes on to the unit tasks
        beside their stage's decisions (one XCom read for both).
    :param rollback_task_ids: the rollback task id of each stage.
    :param undo_task_id: the undo entry task; :param undo_stage_task_ids: the undo task id of each stage.
    :param rehearse_task_id: the rehearse task, where the pipeline has one.
    """

    template_fields: Sequence[str] = ("member",)  # a fleet member: the wave group's mapped argument
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        pipeline_dir: str | os.PathLike[str],
        lock_task_id: str | None = None,
        rollback_task_ids: Mapping[str, str] | None = None,
        undo_task_id: str | None = None,
        undo_stage_task_ids: Mapping[str, str] | None = None,
        rehearse_task_id: str | None = None,
        member: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_pipeline(pipeline_dir, member)
        self.lock_task_id = lock_task_id
        self.rollback_task_ids = dict(rollback_task_ids or {})
        self.undo_task_id = undo_task_id
        self.undo_stage_task_ids = dict(undo_stage_task_ids or {})
        self.rehearse_task_id = rehearse_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        request = run_request(context)
        with airflow_errors(), self.workspace(context) as ws:
            engine = ws.engine(run=run_info(context), renderer=self.renderer(context))
            decisions = engine.plan(engine.snapshot())
            details = plan_details(ws.pipeline, decisions, targets=open_target, renderer=self.renderer(context))
            self._log_plan(decisions, details)
            units = engine.undo_targets(to=request.undo_to) if action_rule(request.action).undoes else []
            skips = engine.skips(decisions, request.action, units)
            undo = [u.id for u in units]
            if action_rule(request.action).undoes:
                self.log.info("undo to %s rolls back, newest first: %s", request.undo_to, undo or "nothing")
                latest = {d.unit.id: d.latest for d in decisions}
                for u in units:  # what `flamingock undo --plan` shows
                    shown = rollbacks(ws.pipeline, u, self.renderer(context), latest.get(u.id))
                    self.log.info("undo %s sends: %s", u.id, shown)
        token = self.lease_token(context, self.lock_task_id) if self.lock_task_id else None
        handed = {} if token is None else {TOKEN_KEY: token}
        for stage in ws.pipeline.stages:  # one XCom per stage: a unit task reads only its own stage's
            mine = [d for d in decisions if d.unit.stage == stage.name]
            context["ti"].xcom_push(key=stage_key(stage.name), value=decisions_to_xcom(mine, details) | handed)
        summary = {
            "action": request.action,
            "member": ws.pipeline.member,
            "apply": [d.unit.id for d in decisions if d.action is NextAction.APPLY],
            "blocked": [d.unit.id for d in decisions if d.action is NextAction.BLOCKED],
            "undo": undo,
            "risk": {uid: {"risk": d["risk"], "impact": d["impact"]} for uid, d in details.items()},
        }
        idle = self.idle_task_ids(ws.pipeline, skips)
        if not idle:
            return summary
        context["ti"].xcom_push(key="return_value", value=summary)  # skip() ends execute by raising
        self.log.info("skipping %d task(s) with nothing to do in this run: %s", len(idle), ", ".join(idle))
        map_index = context["ti"].map_index
        if map_index is not None and map_index >= 0:
            # A fleet member's plan (a wave's task group is mapped over its members): skip this member's
            # task instances only. SkipMixin.skip() would leave mapped tasks to NotPreviouslySkippedDep,
            # which reads the skip list of a direct parent only, under map index -1 for a task in a group.
            raise DownstreamTasksSkipped(tasks=[(task_id, map_index) for task_id in idle])
        self.skip(context["ti"], [self.dag.get_task(task_id) for task_id in idle])
        return summary

    def idle_task_ids(self, pipeline: Pipeline, skips: Skips) -> list[str]:
        """Task ids of this run that cannot do anything, in the DAG's order."""
        idle: list[str] = []
        stages = {s.name: s for s in pipeline.stages}
        for task in self.dag.tasks:
            if getattr(task, "plan_task_id", None) != self.task_id:
                continue
            unit_id, stage = getattr(task, "unit_id", None), getattr(task, "stage", None)
            if unit_id is not None:
                is_idle = unit_id in skips.units
            else:  # one task per stage
                is_idle = stage in stages and skips.stage_idle(stages[stage])
            if is_idle:
                idle.append(task.task_id)
        idle += [task_id for stage, task_id in self.rollback_task_ids.items() if stage in skips.rollbacks]
        if skips.undo and self.undo_task_id:
            idle.append(self.undo_task_id)
        idle += [task_id for stage, task_id in self.undo_stage_task_ids.items() if stage in skips.undo_stages]
        if skips.rehearse and self.rehearse_task_id:
            idle.append(self.rehearse_task_id)
        return idle

    def _log_plan(self, decisions: Sequence[Decision], details: Mapping[str, Mapping[str, Any]]) -> None:
        self.log.info(
            "plan (stage, change, latest state, next action, risk, impact):\n%s", plan_lines(decisions, details)
        )


def plan_lines(decisions: Sequence[Decision], details: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per unit, then the risk reasons of each unit to apply."""
    width = max((len(d.unit.id) for d in decisions), default=10)
    lines = []
    for d in decisions:
        risk = details[d.unit.id]
        line = f"{d.unit.stage:>12} {d.unit.id:<{width}} {d.state.value if d.state else '-':<16} {d.action.value:<7}"
        line += f" {risk['risk']:<11}" + (f" impact: {risk['impact']}" if risk["impact"] else "")
        lines.append(line + (f"  ({d.reason})" if d.reason else ""))
        if d.action is NextAction.APPLY:
            lines += [f"{'':>13}{reason}" for reason in risk["reasons"]]
    return "\n".join(lines)
