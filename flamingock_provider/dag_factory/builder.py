"""Build a pipeline's tasks: lock → plan → one TaskGroup per stage → complete, with release as teardown.

::

    lock (setup) ─► plan ─► [stage a: apply_x ─► apply_y ─► rollback] ─► [stage b: ...] ─► complete
                      └──► undo ─► [undo_stages: b ─► a] ───────────────────────────────────────┘
    release (teardown of lock, after every stage, rollback, undo and complete)

The ``undo_stages`` group holds one task per stage that rolls back that stage's share of an undo run,
newest stage first, so the grid shows which stages an undo touched; the ``undo`` entry task checks the
whole undo first. They sit in a group of their own: inside the stage groups, the undo chain (newest
first) and the apply chain (oldest first) would make the groups depend on each other both ways, and
Airflow's grid cannot draw groups in a cycle.
With ``approval.required`` other than ``never``, an ``approve`` task sits between plan and the stages
and undo (``dag_factory/approval.py``).

The plan task sets ``skipped`` the tasks with nothing to do in the run before any starts (SPEC §10).
Unit tasks run ``none_failed`` (a skipped unit does not stop the next one); a stage's ``rollback``
task runs ``one_failed`` and checks the audit log; ``complete`` runs ``none_failed`` and is the
run's only non-teardown leaf, so any failure fails the run even after a successful compensation.
Building reads only the pipeline folder: no network, no audit store, no Airflow connection.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, BaseOperator, Param, TaskGroup
from airflow.sdk.definitions.param import ParamsDict

from flamingock_provider.core.model import Pipeline, RunMode, Stage
from flamingock_provider.core.pipeline_cache import cached_pipeline
from flamingock_provider.dag_factory.approval import approve_task, read_approval_from
from flamingock_provider.dag_factory.docs import dag_doc, stage_doc, unit_doc
from flamingock_provider.dag_factory.fleet import build_fleet_tasks
from flamingock_provider.operators._common import ACTIONS, REHEARSE, caller_file
from flamingock_provider.operators.apply import FlamingockApplyOperator
from flamingock_provider.operators.complete import FlamingockCompleteOperator
from flamingock_provider.operators.plan import FlamingockPlanOperator
from flamingock_provider.operators.rehearse import FlamingockRehearseOperator
from flamingock_provider.operators.release import FlamingockReleaseOperator
from flamingock_provider.operators.rollback import FlamingockRollbackOperator
from flamingock_provider.operators.undo import FlamingockUndoOperator
from flamingock_provider.sensors.lock import FlamingockLockSensor

UNDO_GROUP = "undo_stages"
RESERVED_IDS = frozenset({"lock", "plan", "approve", "undo", "complete", "release", "rehearse", UNDO_GROUP})
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def dag_id_for(pipeline_id: str) -> str:
    return f"flamingock_{pipeline_id}"


def trigger_params(change_ids: Sequence[str] = (), rehearse: bool = False) -> dict[str, Param]:
    """Return fresh trigger-form params (Airflow writes run conf into Param objects: never share them).

    ``undo_to`` offers the pipeline's change ids (and none): the form refuses any other value.
    ``rehearse``: the pipeline has ``rehearsal.scratch``, so ``action`` also offers ``rehearse``.
    """
    return {
        "action": Param(
            "apply",
            type="string",
            enum=[*ACTIONS, REHEARSE] if rehearse else list(ACTIONS),
            title="Action",
            description="apply: run pending changes · plan: show what apply would do (no lock, no change) · "
            "undo: roll back the changes applied after 'undo_to', newest first"
            + (" · rehearse: apply, undo and apply again on the scratch targets" if rehearse else ""),
        ),
        "undo_to": Param(
            None,
            type=["null", "string"],
            enum=[None, *change_ids],
            title="Undo to",
            description="only for action 'undo' (ignored otherwise): the change id to roll back to; the changes "
            "applied after it are undone, newest first",
        ),
    }


def build_dag(pipeline_dir: str | os.PathLike[str], **dag_kwargs: Any) -> DAG:
    """Return the DAG ``flamingock_<pipeline>`` of one pipeline folder; ``dag_kwargs`` override DAG arguments."""
    dag_file = caller_file()
    pipeline_path = _absolute(pipeline_dir, dag_file)
    pipeline = cached_pipeline(pipeline_path)
    arguments = _dag_arguments(pipeline, dag_kwargs)
    params = ParamsDict(arguments.pop("params"))
    dag = DAG(**arguments)
    if dag_file is not None:
        dag.fileloc = str(dag_file)  # the DAG file, not this module: tasks resolve the folder from it
    with dag:
        _build_tasks(pipeline, pipeline_path)
    # Set after the tasks: each operator deep-copies the DAG's params when built (a third of the
    # build time at 1,000 units) and tasks read them from the DAG at run time anyway.
    params.update(dag.params)  # params that default_args carried
    dag.params = params
    return dag


def build_task_group(pipeline_dir: str | os.PathLike[str], *, group_id: str | None = None) -> TaskGroup:
    """Return a TaskGroup with a pipeline's lock, plan, stages and release; call it inside ``with DAG(...)``.

    Put it before the tasks that need the changes: ``build_task_group(...) >> etl``.
    """
    pipeline_path = _absolute(pipeline_dir, caller_file())
    pipeline = cached_pipeline(pipeline_path)
    with TaskGroup(group_id=group_id or dag_id_for(pipeline.id), tooltip=pipeline.description) as group:
        _build_tasks(pipeline, pipeline_path)
    return group


def _build_tasks(pipeline: Pipeline, pipeline_dir: str) -> None:
    """A fleet's waves of member tasks (``dag_factory/fleet.py``), or the pipeline's own tasks."""
    if pipeline.fleet is not None:
        build_fleet_tasks(pipeline, pipeline_dir, lambda m: _PipelineTasks(pipeline, pipeline_dir, member=m).build())
    else:
        _PipelineTasks(pipeline, pipeline_dir).build()


def _absolute(pipeline_dir: str | os.PathLike[str], dag_file: Path | None) -> str:
    path = Path(pipeline_dir)
    if not path.is_absolute():
        path = (dag_file.parent if dag_file is not None else Path.cwd()) / path
    return os.path.abspath(path)


def _dag_arguments(pipeline: Pipeline, overrides: dict[str, Any]) -> dict[str, Any]:
    overrides = dict(overrides)
    tags = {"flamingock", *pipeline.tags, *overrides.pop("tags", ())}
    params = {
        **trigger_params(
            [u.id for u in pipeline.units], rehearse=bool(pipeline.rehearsal_scratch) and pipeline.fleet is None
        ),
        **overrides.pop("params", {}),
    }
    arguments: dict[str, Any] = {
        "dag_id": dag_id_for(pipeline.id),
        "schedule": _schedule(pipeline.schedule),
        "start_date": pipeline.start_date,
        "catchup": False,
        "max_active_runs": 1,
        "tags": sorted(tags),
        "description": pipeline.description or None,
        "doc_md": dag_doc(pipeline),
        "params": params,
    }
    arguments.update(overrides)
    return arguments


def _schedule(schedule: Any) -> Any:
    """Map pipeline.yaml's schedule to Airflow's: asset URIs become Assets, anything else passes."""
    if isinstance(schedule, list):
        return [Asset(uri) for uri in schedule]
    if isinstance(schedule, str) and "://" in schedule:
        return [Asset(schedule)]
    return schedule


def unit_task_ids(pipeline: Pipeline) -> dict[str, str]:
    """Return a stable task id per unit: ``apply_<id>`` with unsafe characters as ``_``."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for unit in pipeline.units:
        task_id = f"apply_{_UNSAFE.sub('_', unit.id)}"
        if task_id in taken:  # two ids that differ only in unsafe characters
            task_id = f"{task_id}_{hashlib.sha256(unit.id.encode()).hexdigest()[:6]}"
        taken.add(task_id)
        ids[unit.id] = task_id
    return ids


def _link(upstream: Sequence[BaseOperator], task: BaseOperator) -> None:
    """Make ``task`` run after ``upstream``: what ``upstream >> task`` records, without its cost.

    Airflow's ``>>`` hashes the whole DAG (every task id) on each call to check that both sides
    share one DAG: quadratic in the task count (seconds at 10,000 units). Here every task was
    created in the same DAG context, so the edge is recorded directly, as ``>>`` itself does.
    """
    for before in upstream:
        assert before.dag is task.dag, "tasks of one pipeline share one DAG"
        before.downstream_task_ids.add(task.task_id)
        task.upstream_task_ids.add(before.task_id)


def stage_group_id(stage: Stage) -> str:
    return f"{stage.name}_stage" if stage.name in RESERVED_IDS else stage.name


@dataclass
class _StageTasks:
    first: BaseOperator
    last: BaseOperator
    rollback: BaseOperator


@dataclass
class _PipelineTasks:
    """Creates one pipeline's tasks in the current DAG or TaskGroup context."""

    pipeline: Pipeline
    pipeline_dir: str
    member: Any = None  # in a fleet's wave group: the group's mapped argument (every task runs for it)
    stages: dict[str, _StageTasks] = field(default_factory=dict)

    def build(self) -> list[BaseOperator]:
        """Create the tasks; return the ones a fleet's next wave and report follow (complete, release)."""
        lock = self._lock()
        plan = FlamingockPlanOperator(
            task_id="plan", pipeline_dir=self.pipeline_dir, lock_task_id=lock.task_id, member=self.member
        )
        _link([lock], plan)
        approve = approve_task(self.pipeline, self.pipeline_dir, plan, _link, member=self.member)
        task_ids = unit_task_ids(self.pipeline)
        for stage in self.pipeline.stages:
            self.stages[stage.name] = self._stage(stage, lock.task_id, plan.task_id, task_ids)
            self._wire_stage(stage, approve or plan)
        undo = FlamingockUndoOperator(
            task_id="undo",
            pipeline_dir=self.pipeline_dir,
            lock_task_id=lock.task_id,
            check_only=True,
            member=self.member,
        )
        _link([approve or plan], undo)
        undos = self._undo_stages(lock.task_id)
        for before, after in pairwise([undo, *undos.values()]):
            # after the entry task too: the newer stages' tasks the plan task skipped pass nothing on
            _link(list(dict.fromkeys([undo, before])), after)
        if approve is not None:
            read_approval_from(approve, [*self._writers(plan), undo, *undos.values()])
        # In a fleet the report after the waves emits the asset, once for the whole rollout.
        outlets = {} if self.member is None else {"outlets": [], "member": self.member}
        complete = FlamingockCompleteOperator(task_id="complete", pipeline_id=self.pipeline.id, **outlets)
        # The plan task skips what a run cannot do (the unit tasks find it by their plan_task_id).
        plan.rollback_task_ids = {name: t.rollback.task_id for name, t in self.stages.items()}
        plan.undo_task_id = undo.task_id
        plan.undo_stage_task_ids = {name: task.task_id for name, task in undos.items()}
        # Every undo task reaches complete itself: a skipped one would not pass a failure on.
        stage_work = [*(t.last for t in self.stages.values()), *(t.rollback for t in self.stages.values())]
        work = [*stage_work, undo, *undos.values()]
        work += self._rehearse(plan)
        _link(work, complete)
        release = FlamingockReleaseOperator(
            task_id="release", pipeline_dir=self.pipeline_dir, lock_task_id=lock.task_id, member=self.member
        )
        _link([*work, complete], release)
        release.as_teardown(setups=lock)
        return [complete, release]

    def _rehearse(self, plan: FlamingockPlanOperator) -> list[BaseOperator]:
        """The rehearse task after plan, where pipeline.yaml has ``rehearsal.scratch`` (SPEC §14)."""
        if not self.pipeline.rehearsal_scratch or self.member is not None:  # a fleet rehearses on the CLI
            return []
        rehearse = FlamingockRehearseOperator(task_id="rehearse", pipeline_dir=self.pipeline_dir)
        _link([plan], rehearse)
        plan.rehearse_task_id = rehearse.task_id
        return [rehearse]

    def _writers(self, plan: FlamingockPlanOperator) -> list[BaseOperator]:
        """The unit and rollback tasks of this pipeline (they write audit entries)."""
        rollbacks = {t.rollback.task_id for t in self.stages.values()}
        assert plan.dag is not None
        tasks = [t for t in plan.dag.tasks if isinstance(t, BaseOperator)]
        return [t for t in tasks if getattr(t, "plan_task_id", None) == plan.task_id or t.task_id in rollbacks]

    def _lock(self) -> FlamingockLockSensor:
        config = self.pipeline.lock
        return FlamingockLockSensor(
            task_id="lock",
            pipeline_dir=self.pipeline_dir,
            wait_timeout_seconds=config.wait_timeout_seconds,
            poke_interval=config.poke_interval_seconds,
            mode=config.mode.value,
            member=self.member,
        )

    def _stage(self, stage: Stage, lock_id: str, plan_id: str, task_ids: dict[str, str]) -> _StageTasks:
        common = {"pipeline_dir": self.pipeline_dir, "lock_task_id": lock_id, "member": self.member}
        first_rule = "all_done" if stage.run_after_failure else "none_failed"
        with TaskGroup(group_id=stage_group_id(stage), tooltip=stage.description):
            if self.pipeline.run_mode is RunMode.TASK_PER_STAGE:
                tasks: Sequence[BaseOperator] = [
                    FlamingockApplyOperator(
                        task_id="apply",
                        stage=stage.name,
                        plan_task_id=plan_id,
                        trigger_rule=first_rule,
                        doc_md=stage_doc(stage),
                        **common,
                    )
                ]
            else:
                tasks = [
                    FlamingockApplyOperator(
                        task_id=task_ids[unit.id],
                        unit_id=unit.id,
                        plan_task_id=plan_id,
                        trigger_rule=first_rule if position == 0 else "none_failed",
                        doc_md=unit_doc(self.pipeline, unit),
                        **common,
                    )
                    for position, unit in enumerate(stage.units)
                ]
            for before, after in pairwise(tasks):
                _link([before], after)
            rollback = FlamingockRollbackOperator(task_id="rollback", stage=stage.name, **common)
            _link([tasks[-1]], rollback)
        return _StageTasks(tasks[0], tasks[-1], rollback)

    def _undo_stages(self, lock_id: str) -> dict[str, BaseOperator]:
        """One undo task per stage, newest stage first, in the ``undo_stages`` group."""
        with TaskGroup(group_id=UNDO_GROUP, tooltip="each stage's share of an undo run, newest stage first"):
            return {
                # none_failed: a newer stage with nothing to undo (skipped) lets this one run; a failure stops it.
                stage.name: FlamingockUndoOperator(
                    task_id=stage_group_id(stage),
                    stage=stage.name,
                    trigger_rule="none_failed",
                    pipeline_dir=self.pipeline_dir,
                    lock_task_id=lock_id,
                    member=self.member,
                    doc_md=f"Roll back stage `{stage.name}`'s changes in an undo run (after the newer stages').",
                )
                for stage in reversed(self.pipeline.stages)
            }

    def _wire_stage(self, stage: Stage, plan: BaseOperator) -> None:
        """Start the stage after its dependencies (the previous stage unless stage.yaml says depends_on)."""
        deps = self._dependencies(stage)
        if stage.run_after_failure:  # after the dependencies and their compensation, whatever happened
            upstream = [t for name in deps for t in (self.stages[name].last, self.stages[name].rollback)]
        else:
            upstream = self._failure_sources(deps)
        _link(upstream or [plan], self.stages[stage.name].first)

    def _dependencies(self, stage: Stage) -> tuple[str, ...]:
        if stage.depends_on is not None:
            return stage.depends_on
        names = [s.name for s in self.pipeline.stages]
        position = names.index(stage.name)
        return (names[position - 1],) if position else ()

    def _failure_sources(self, deps: Sequence[str]) -> list[BaseOperator]:
        """Last tasks of ``deps``, looking through run_after_failure stages to what they ran after.

        A clean-up stage succeeds after an earlier failure; the stages after it must still not run.
        """
        found: list[BaseOperator] = []
        for name in deps:
            found.append(self.stages[name].last)
            stage = self.pipeline.stage(name)
            if stage.run_after_failure:
                found += self._failure_sources(self._dependencies(stage))
        return list(dict.fromkeys(found))
