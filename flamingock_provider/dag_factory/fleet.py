"""A fleet pipeline's tasks (SPEC §10, §13): one DAG whatever the member count.

::

    members ─► [wave_1: members ─► member x N] ─► [wave_2: members ─► member x N] ─► ... ─► report

``members`` resolves the member list when the run starts (the Variable is never read at parse time)
and hands each wave its members; each wave is a TaskGroup with one task mapped over its members (the
map index shows the member's name), at most ``max_parallel`` at once. Under ``on_error: halt`` a wave
starts only when no member of the waves before it failed (``none_failed``: an empty wave is skipped and
does not stop the next); under ``continue`` every wave runs (``all_done``). ``report`` runs last
whatever happened and fails the run naming the members that failed. The wave count comes from
pipeline.yaml, so the DAG's shape never depends on the members.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import TaskGroup
from airflow.sdk.definitions.xcom_arg import XComArg

from flamingock_provider.core.model import OnError, Pipeline
from flamingock_provider.operators.fleet import (
    FlamingockFleetMembersOperator,
    FlamingockFleetReportOperator,
    FlamingockMemberOperator,
    FlamingockWaveOperator,
    wave_key,
)

MEMBER_TASK = "member"


def build_fleet_tasks(pipeline: Pipeline, pipeline_dir: str) -> None:
    """Create a fleet pipeline's tasks in the current DAG (or TaskGroup) context."""
    fleet = pipeline.fleet
    assert fleet is not None
    members = FlamingockFleetMembersOperator(task_id="members", pipeline_dir=pipeline_dir)
    rule = "none_failed" if fleet.on_error is OnError.HALT else "all_done"
    previous: Any = members
    member_tasks: list[Any] = []
    for number in range(1, len(fleet.waves) + 1):
        with TaskGroup(group_id=wave_key(number), tooltip=f"wave {number}: {fleet.waves[number - 1]}"):
            wave = FlamingockWaveOperator(
                task_id="members",
                members_task_id=members.task_id,
                wave=number,
                trigger_rule="all_success" if number == 1 else rule,
            )
            task = FlamingockMemberOperator.partial(
                task_id=MEMBER_TASK,
                pipeline_dir=pipeline_dir,
                wave=number,
                max_active_tis_per_dagrun=fleet.max_parallel,
                map_index_template="{{ task.member['name'] }}",
            ).expand(member=XComArg(wave))
        previous >> wave >> task
        previous = task
        member_tasks.append(task)
    report = FlamingockFleetReportOperator(
        task_id="report", members_task_id=members.task_id, member_task_ids=[t.task_id for t in member_tasks]
    )
    [members, *member_tasks] >> report
