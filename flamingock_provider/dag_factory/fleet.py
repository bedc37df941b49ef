"""A fleet pipeline's tasks (SPEC §10, §13): one DAG whatever the member count.

::

    members ─► wave_1_members ─► [wave_1, mapped over the wave's members:
                                   lock ─► plan ─► stages ─► complete; release] ─► wave_2_members ─► ... ─► report

``members`` resolves the member list when the run starts (the Variable is never read at parse time) and
hands each wave its members. Each wave is a task group mapped over its members (one map index per
member, named after it) holding the pipeline's usual tasks, so every member has its own lock, plan,
stage, rollback and undo task instances, audit trail and lease ``<pipeline>@<member>``. Within a wave,
each task runs at most ``max_parallel`` member instances at once, and the tasks nearer the end of a
member's chain go first (``weight_rule: upstream``), so members in flight finish before new ones start.
Under ``on_error: halt`` a wave starts only when no member of the waves before it failed (``none_failed``:
an empty wave is skipped and does not stop the next); under ``continue`` every wave runs (``all_done``).
``report`` runs last whatever happened and fails the run naming the members that failed. The wave
count comes from pipeline.yaml, so the DAG's shape never depends on the members.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk import BaseOperator, TaskGroup, task_group
from airflow.sdk.definitions.xcom_arg import XComArg

from flamingock_provider.core.model import OnError, Pipeline
from flamingock_provider.operators.fleet import (
    FlamingockFleetMembersOperator,
    FlamingockFleetReportOperator,
    FlamingockWaveOperator,
    wave_key,
    wave_members_task_id,
)

MAP_INDEX_TEMPLATE = "{{ task.member['name'] }}"

BuildMember = Callable[[Any], Sequence[BaseOperator]]


def build_fleet_tasks(pipeline: Pipeline, pipeline_dir: str, build_member: BuildMember) -> None:
    """Create a fleet pipeline's tasks in the current DAG (or TaskGroup) context.

    ``build_member(member)`` creates one member's tasks in the current context, every task taking
    ``member`` (the wave group's mapped argument), and returns the tasks the next wave follows.
    """
    fleet = pipeline.fleet
    assert fleet is not None
    members = FlamingockFleetMembersOperator(task_id="members", pipeline_dir=pipeline_dir)
    rule = "none_failed" if fleet.on_error is OnError.HALT else "all_done"
    previous: list[BaseOperator] = [members]
    framing: list[BaseOperator] = [members]
    groups: list[str] = []
    group_args = {
        "max_active_tis_per_dagrun": fleet.max_parallel,
        "weight_rule": "upstream",
        "map_index_template": MAP_INDEX_TEMPLATE,
    }
    for number in range(1, len(fleet.waves) + 1):
        wave = FlamingockWaveOperator(
            task_id=wave_members_task_id(number),
            members_task_id=members.task_id,
            wave=number,
            trigger_rule="all_success" if number == 1 else rule,
        )
        for before in previous:
            before >> wave
        leaves: list[BaseOperator] = []

        def member_tasks(member: Any, leaves: list[BaseOperator] = leaves) -> None:
            leaves.extend(build_member(member))

        group = task_group(
            group_id=wave_key(number),
            tooltip=f"wave {number} ({fleet.waves[number - 1]}): one map index per member",
            default_args=group_args,
        )(member_tasks)
        mapped = group.expand(member=XComArg(wave))
        assert isinstance(mapped, TaskGroup) and mapped.group_id is not None
        groups.append(mapped.group_id)  # prefixed by any TaskGroup around it (build_task_group)
        previous = [leaves[0]]  # complete: the member's run finished without a failure
        framing += [wave, *leaves]
    report = FlamingockFleetReportOperator(
        task_id="report",
        pipeline_id=pipeline.id,
        members_task_id=members.task_id,
        wave_groups=groups,
    )
    for before in framing:
        before >> report
