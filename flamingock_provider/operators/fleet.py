"""A fleet's own tasks (SPEC §10, §13): resolve the members when the run starts, hand each wave its list, report.

The work of each member is the pipeline's usual tasks (lock, plan, stages, release) in the wave's task
group, mapped over the wave's members (``dag_factory/fleet.py``); these tasks frame them:

- ``members`` reads the member list (inline, or the Airflow Variable: at run time, never at parse time),
  splits it into the declared waves and pushes one list per wave (XCom key ``wave_<n>``).
- ``wave_<n>_members`` hands that wave's list on: Airflow maps a task group only over a task's return value.
- ``report`` (after every wave, whatever happened) fails the run naming the members that failed, were
  blocked, or never started because an earlier wave failed under ``on_error: halt``; after an apply in
  which every member succeeded it emits the pipeline's asset, once for the whole rollout.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from flamingock_provider.core.fleet import split_waves
from flamingock_provider.core.plan import action_rule
from flamingock_provider.operators._common import FlamingockTaskMixin, airflow_errors, member_json, run_request
from flamingock_provider.operators.complete import pipeline_asset

if TYPE_CHECKING:
    from airflow.sdk import Context


OUTCOME_KEY = "outcome"


def wave_key(number: int) -> str:
    """The wave's task group id, and the XCom key of its member list."""
    return f"wave_{number}"


def wave_members_task_id(number: int) -> str:
    return f"{wave_key(number)}_members"


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
    """Hand one wave its members (what its task group maps over): the members task's list for the wave."""

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
        self.log.info("wave %d: %s", self.wave, ", ".join(m["name"] for m in members) or "(no member)")
        return list(members)


class FlamingockFleetReportOperator(BaseOperator):
    """The run's last task: fail naming the members that failed, were blocked, or never started.

    It reads the run's finished task instances (Airflow's breadcrumbs: task id, map index, state) once,
    and each member's plan (which names the blocked changes); a member is the map index of its wave's
    task group.
    """

    ui_color = "#fde7e9"

    def __init__(self, *, pipeline_id: str, members_task_id: str, wave_groups: Sequence[str], **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        kwargs.setdefault("retries", 0)
        given = "outlets" in kwargs
        super().__init__(**kwargs)
        self.pipeline_id = pipeline_id
        self.members_task_id = members_task_id
        self.wave_groups = list(wave_groups)  # each wave's task group id (prefixed inside a user's TaskGroup)
        if not given:
            self.outlets = [pipeline_asset(pipeline_id)]

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        action = run_request(context).action
        waves = [
            ti.xcom_pull(task_ids=self.members_task_id, key=wave_key(n)) for n in range(1, len(self.wave_groups) + 1)
        ]
        if waves and waves[0] is None:
            raise AirflowFailException("the members task handed on no member list; see its log")
        finished = self._finished(ti)
        failed: dict[str, list[str]] = {}
        blocked: dict[str, list[str]] = {}
        missing: list[str] = []
        for number, wave in enumerate(waves, start=1):
            group = f"{self.wave_groups[number - 1]}."
            plans = {row.get("member"): row for row in _values(ti.xcom_pull(task_ids=f"{group}plan"))}
            for index, data in enumerate(wave or []):
                name = data["name"]
                states = finished.get((number, index))
                if not states:
                    missing.append(name)
                    continue
                failures = [task_id[len(group) :] for task_id, state in states if state == "failed"]
                stuck = list((plans.get(name) or {}).get("blocked") or [])
                if failures and stuck:
                    blocked[name] = stuck
                elif failures:
                    failed[name] = failures
        names = [data["name"] for wave in waves for data in (wave or [])]
        self.log.info(
            "fleet %s of %d member(s): %d failed, %d blocked, %d not run",
            action,
            len(names),
            len(failed),
            len(blocked),
            len(missing),
        )
        outcome = {"failed": failed, "blocked": blocked, "not_run": missing}
        ti.xcom_push(key=OUTCOME_KEY, value=outcome)  # what the report says, for the XCom tab and for callers
        if failed or blocked or missing:
            raise AirflowFailException(report_message(action, failed, blocked, missing))
        if not action_rule(action).emits_asset:
            self.outlets = []  # Airflow records an event for each outlet of a task that succeeds
        return {"pipeline": self.pipeline_id, "action": action, "members": names}

    def _finished(self, ti: Any) -> dict[tuple[int, int], list[tuple[str, str]]]:
        """(wave, map index) -> [(task id, state)] of the run's finished task instances in the wave groups."""
        prefixes = [(f"{group}.", number) for number, group in enumerate(self.wave_groups, start=1)]
        found: dict[tuple[int, int], list[tuple[str, str]]] = defaultdict(list)
        for crumb in ti.get_task_breadcrumbs(dag_id=ti.dag_id, run_id=ti.run_id):
            task_id, map_index = str(crumb["task_id"]), int(crumb["map_index"])
            if map_index < 0:
                continue
            for prefix, number in prefixes:
                if task_id.startswith(prefix):
                    found[(number, map_index)].append((task_id, str(crumb["state"])))
        return found


def report_message(
    action: str, failed: Mapping[str, Sequence[str]], blocked: Mapping[str, Sequence[str]], missing: Sequence[str]
) -> str:
    """Why a fleet run failed: the members that failed (their failed tasks), were blocked, were not run."""
    parts = []
    if failed:
        parts.append("failed: " + ", ".join(f"{name} ({', '.join(tasks)})" for name, tasks in failed.items()))
    if blocked:
        shown = ", ".join(f"{name} (change {', '.join(ids)})" for name, ids in blocked.items())
        parts.append(
            f"blocked: {shown}: the blocked task's log and `flamingock status PIPELINE_DIR --member NAME` give "
            "the exact `flamingock fix` command"
        )
    if missing:
        parts.append(f"not run (an earlier wave failed, or its tasks did not finish): {', '.join(missing)}")
    return f"fleet {action}: " + "; ".join(parts) + "; see each member's task logs"


def _values(pulled: Any) -> list[Mapping[str, Any]]:
    """The values one mapped task pushed (a lazy sequence over its map indexes, or one value)."""
    if pulled is None:
        return []
    if isinstance(pulled, Mapping):
        return [pulled]
    if isinstance(pulled, Sequence) or hasattr(pulled, "__iter__"):
        return [row for row in pulled if isinstance(row, Mapping)]
    return []
