"""A fleet's tasks (SPEC §10, §13): resolve the members when the run starts, one mapped task per wave, a report.

- ``members`` reads the member list (inline, or the Airflow Variable: at run time, never at parse time),
  splits it into the declared waves and pushes one list per wave (XCom key ``wave_<n>``).
- ``members`` of each wave (its TaskGroup) hands that wave's list on: Airflow maps only over a
  task's return value.
- ``member`` (one per wave, mapped over that wave's members, its map index named after the member)
  runs one member's action under that member's own lease ``<pipeline>@<member>``: apply (plan,
  stages, compensation: the engine's run), plan, or undo. It pushes its outcome (key ``outcome``)
  before it fails, so the report can tell a failed member from one that never started.
- ``report`` (after every wave, whatever happened) fails the run naming the members that failed,
  were blocked, or were never started because an earlier wave failed under ``on_error: halt``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from flamingock_provider.core.fleet import parse_members, split_waves
from flamingock_provider.core.model import Member, Pipeline
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.fleet_commands import member_outcome
from flamingock_provider.operators._common import (
    FlamingockTaskMixin,
    airflow_errors,
    run_info,
    run_owner,
    run_request,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from flamingock_provider.core.workspace import Workspace

OUTCOME_KEY = "outcome"


def wave_key(number: int) -> str:
    return f"wave_{number}"


def member_json(member: Member) -> dict[str, Any]:
    """A member as the XCom of the ``members`` task carries it (the targets it maps, by connection)."""
    return {
        "name": member.name,
        "targets": {name: {"conn_id": t.conn_id, "database": t.database} for name, t in member.targets.items()},
    }


def member_from_json(pipeline: Pipeline, data: Mapping[str, Any]) -> Member:
    """Rebuild a member pushed by the ``members`` task, checked against the pipeline's targets again."""
    problems: list[str] = []
    members = parse_members([dict(data)], pipeline.targets, problems)
    if problems or not members:
        raise ConfigurationError(f"member {data.get('name')!r} handed on by the members task: {'; '.join(problems)}")
    return members[0]


class FlamingockFleetMembersOperator(FlamingockTaskMixin, BaseOperator):
    """Resolve a fleet's members when the run starts and hand each wave its members."""

    ui_color = "#fff4e5"

    def __init__(self, *, pipeline_dir: str | os.PathLike[str], **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self._init_pipeline(pipeline_dir)

    def execute(self, context: Context) -> list[str]:
        run_request(context)  # a bad action or a missing undo_to fails the run before any member
        with airflow_errors(), self.hook(context).workspace() as ws:
            members = ws.members()
            fleet = ws.pipeline.fleet
            if fleet is None:
                raise AirflowFailException(f"pipeline {ws.pipeline.id!r} has no 'fleet:'; the DAG is out of date")
        waves = split_waves(members, fleet.waves)
        for number, wave in enumerate(waves, start=1):
            context["ti"].xcom_push(key=wave_key(number), value=[member_json(m) for m in wave])
            self.log.info("wave %d: %s", number, ", ".join(m.name for m in wave) or "(no member)")
        return [m.name for m in members]


class FlamingockWaveOperator(BaseOperator):
    """Hand one wave its members (what its member task maps over): the members task's list for the wave."""

    ui_color = "#fff4e5"

    def __init__(self, *, members_task_id: str, wave: int, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.members_task_id = members_task_id
        self.wave = wave

    def execute(self, context: Context) -> list[dict[str, Any]]:
        members = context["ti"].xcom_pull(task_ids=self.members_task_id, key=wave_key(self.wave))
        if members is None:
            raise AirflowFailException(f"the members task handed wave {self.wave} no member list; see its log")
        return list(members)


class FlamingockMemberOperator(FlamingockTaskMixin, BaseOperator):
    """Run the run's action for one fleet member (mapped: one task instance per member of a wave)."""

    ui_color = "#e6f4ea"
    template_fields: Sequence[str] = ()

    def __init__(self, *, pipeline_dir: str | os.PathLike[str], member: Any, wave: int, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self._init_pipeline(pipeline_dir)
        self.member = member
        self.wave = wave

    def execute(self, context: Context) -> dict[str, Any]:
        request = run_request(context)
        with airflow_errors(), self.hook(context).workspace() as ws:
            member = member_from_json(ws.pipeline, self.member)
            if request.action == "plan":
                return self._plan(ws, member)
            undo_to = request.undo_to if request.action == "undo" else None
            row = member_outcome(ws, member, lambda scoped: self._run(context, scoped, undo_to))
        row = {
            k: v for k, v in row.items() if k in ("member", "applied", "rolled_back", "skipped", "failed", "blocked")
        }
        context["ti"].xcom_push(key=OUTCOME_KEY, value=row)
        if row.get("failed"):
            change = row["failed"]["id"]
            raise AirflowFailException(
                f"member {member.name!r}: {'change ' + repr(change) if change else 'before its first change'} "
                f"failed: {row['failed']['error']}"
            )
        if row.get("blocked"):
            b = row["blocked"]
            raise AirflowFailException(
                f"member {member.name!r}: change {b['id']!r} is blocked: {b['reason']}; {b['fix']}"
            )
        return row

    def _run(self, context: Context, ws: Workspace, undo_to: str | None) -> dict[str, Any]:
        """The member's apply (``undo_to``: its undo) under its own lease, owned by this DAG run."""
        from flamingock_provider.core.workspace import holding

        ws.check_connections()
        with holding(ws, run_owner(context)) as lease:
            engine = ws.engine(lease=lease, run=run_info(context), renderer=self.renderer(context))
            return (engine.undo(undo_to) if undo_to is not None else engine.apply()).to_json()

    def _plan(self, ws: Workspace, member: Member) -> dict[str, Any]:
        scoped = ws.for_member(member)
        snapshot, holder = scoped.observe()
        decisions = scoped.engine().plan(snapshot, live_token=holder.token if holder else None)
        lines = [f"{d.unit.id}: {d.action.value}" + (f" ({d.reason})" if d.reason else "") for d in decisions]
        self.log.info("plan of member %s:\n  %s", member.name, "\n  ".join(lines))
        pending = [d.unit.id for d in decisions if d.action.value == "apply"]
        if not pending:
            raise AirflowSkipException(f"member {member.name!r}: nothing to apply")
        return {"member": member.name, "pending": pending}


class FlamingockFleetReportOperator(BaseOperator):
    """The run's last task: fail naming the members that failed, were blocked, or never started."""

    ui_color = "#fde7e9"

    def __init__(self, *, members_task_id: str, member_task_ids: Sequence[str], **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.members_task_id = members_task_id
        self.member_task_ids = list(member_task_ids)

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        names = ti.xcom_pull(task_ids=self.members_task_id)
        if names is None:
            raise AirflowFailException("the members task handed on no member list; see its log")
        outcomes: dict[str, Mapping[str, Any]] = {}
        for task_id in self.member_task_ids:
            for row in _values(ti.xcom_pull(task_ids=task_id, key=OUTCOME_KEY)):
                outcomes[row["member"]] = row
        failed = [n for n in names if (outcomes.get(n) or {}).get("failed")]
        blocked = [n for n in names if (outcomes.get(n) or {}).get("blocked")]
        action = run_request(context).action
        missing = [] if action == "plan" else [n for n in names if n not in outcomes]
        if failed or blocked or missing:
            parts = [f"failed: {', '.join(failed)}"] if failed else []
            parts += [f"blocked: {', '.join(blocked)}"] if blocked else []
            parts += (
                [f"not run (an earlier wave failed, or its task did not finish): {', '.join(missing)}"]
                if missing
                else []
            )
            raise AirflowFailException(f"fleet {action}: " + "; ".join(parts) + "; see each member's task log")
        return {"members": len(names), "action": action}


def _values(pulled: Any) -> list[Mapping[str, Any]]:
    """The outcomes one mapped task pushed (a lazy sequence over its map indexes, or one value)."""
    if pulled is None:
        return []
    if isinstance(pulled, Mapping):
        return [pulled]
    return [row for row in pulled if isinstance(row, Mapping)]
