"""The planner: latest audit entry per change → what a run does with each unit (SPEC §7). No I/O.

A decision is only as fresh as the snapshot it was made from. The engine decides again from a
snapshot read while it holds the lease before it runs anything; a decision made earlier (the Airflow
plan task's, a read before waiting for the lease) is a :class:`Hint` that may let a task skip work,
never make it run a unit.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from flamingock_provider.core.model import (
    APPLIED_STATES,
    REAPPLY_STATES,
    AuditEntry,
    ChangeUnit,
    NextAction,
    Pipeline,
    Recovery,
    Stage,
    State,
    TxStrategy,
)

# (unit, its STARTED entry) -> does the target hold the TX_SEPARATE marker of that execution?
MarkerCheck = Callable[[ChangeUnit, AuditEntry], bool]


@dataclass(frozen=True)
class Resolution:
    """How a person resolves a blocked unit: record ``state`` (after checking the target).

    ``alternative`` is the other state that may be right, e.g. applied when the change is fully in place.
    """

    state: State
    accept_checksum: bool = False
    alternative: State | None = None


@dataclass(frozen=True)
class Decision:
    unit: ChangeUnit
    latest: AuditEntry | None
    action: NextAction
    reason: str = ""
    resolution: Resolution | None = None
    reconcile: bool = False  # STARTED TX_SEPARATE whose marker committed: record APPLIED, then skip

    @property
    def state(self) -> State | None:
        return self.latest.state if self.latest else None

    @property
    def nothing_to_do(self) -> bool:
        """True when the unit is done: a task may skip it without the lease (a hint can only skip)."""
        return self.action is NextAction.SKIP and not self.reconcile


# What an earlier plan said, per change id: only its "nothing to do" answers are ever used.
Hint = Mapping[str, Decision]


def hinted_done(units: Sequence[ChangeUnit], hint: Hint | None) -> bool:
    """True when an earlier plan found every one of ``units`` done, so a task may skip them unread."""
    if not hint or not units:
        return False
    return all(u.id in hint and hint[u.id].nothing_to_do for u in units)


@dataclass(frozen=True)
class Skips:
    """What a run has nothing to do for: its tasks may be skipped before they start (SPEC §10).

    ``units``: change ids with nothing to do in this run; ``rollbacks``: stages whose rollback task
    cannot find a failure (none of their units runs); ``undo``/``complete``/``rehearse``: those tasks are idle.
    """

    units: frozenset[str] = frozenset()
    rollbacks: frozenset[str] = frozenset()
    undo: bool = False
    complete: bool = False
    rehearse: bool = True

    def stage_idle(self, stage: Stage) -> bool:
        """True when no unit of ``stage`` runs (its one task in ``task_per_stage`` mode may be skipped)."""
        return all(u.id in self.units for u in stage.units)


def run_skips(
    stages: Sequence[Stage], decisions: Sequence[Decision], action: str, inactive: Collection[str] = ()
) -> Skips:
    """Decide which tasks of a run cannot do anything, from the plan made under the run's lease.

    ``stages`` in run order; ``action`` is the run's (``apply``, ``plan``, ``undo``); ``inactive``
    holds the change ids whose own or stage ``when:`` is false. A unit has work when its decision is
    anything but "nothing to do" (apply, a reconcile to record, a blocked unit that must fail its
    task) and it is active; a unit without a decision has work (its task decides).

    Only the idle units *before* the first unit with work are skipped: a failure must still stop
    every later unit, and in Airflow it reaches them only through tasks that are not finished yet
    (a task already skipped passes nothing on). Later idle units skip themselves when they start.
    A stage's rollback task is skipped when no unit of the stage has work: it can find no failure
    there (a unit that runs may fail, and its rollback task must then run). ``plan``, ``undo`` and
    ``rehearse`` runs apply nothing; only a ``rehearse`` run starts the rehearse task.
    """
    every = [u.id for s in stages for u in s.units]
    if action != "apply":
        rollbacks = frozenset(s.name for s in stages)
        return Skips(
            frozenset(every), rollbacks, undo=action != "undo", complete=action == "plan", rehearse=action != "rehearse"
        )
    done = {d.unit.id for d in decisions if d.nothing_to_do}
    idle = {uid for uid in every if uid in done or uid in inactive}
    first_work = next((i for i, uid in enumerate(every) if uid not in idle), len(every))
    units = frozenset(every[:first_work])
    return Skips(units, frozenset(s.name for s in stages if all(u.id in idle for u in s.units)), undo=True)


def decide(
    unit: ChangeUnit,
    latest: AuditEntry | None,
    *,
    markers: MarkerCheck | None = None,
    live_token: int | None = None,
) -> Decision:
    """Apply SPEC §7's table to one unit.

    ``live_token``: the fencing token of the live lease holder when the caller does NOT hold the lease
    (status, plan): that holder's STARTED entries are ``running``, never blocked.
    """
    state = latest.state if latest else None
    if latest is None or state in REAPPLY_STATES:
        reason = "its preconditions said no last time: they run again" if state is State.CHECK_FAILED else ""
        return Decision(unit, latest, NextAction.APPLY, reason)
    if state in APPLIED_STATES:
        return _decide_applied(unit, latest)
    if state is State.STARTED and live_token is not None and latest.lock_token == live_token:
        return Decision(unit, latest, NextAction.RUNNING, "being applied now by the live lease holder")
    if state is State.FAILED and latest.tx_strategy is not TxStrategy.NON_TX:
        return Decision(unit, latest, NextAction.APPLY, "the failed attempt was transactional: nothing committed")
    if state is State.STARTED and latest.tx_strategy is TxStrategy.TX_SEPARATE and markers is not None:
        if markers(unit, latest):
            return Decision(unit, latest, NextAction.SKIP, "committed before a crash: recorded APPLIED", None, True)
        return Decision(unit, latest, NextAction.APPLY, "crashed before its transaction committed")
    if state is State.STARTED and latest.tx_strategy is TxStrategy.TX_SHARED:
        return Decision(unit, latest, NextAction.APPLY, "shared transaction never committed")
    return _decide_unfinished(unit, latest)


def _decide_applied(unit: ChangeUnit, latest: AuditEntry) -> Decision:
    if unit.run_always:
        return Decision(unit, latest, NextAction.APPLY, "run_always")
    if drifted(unit, latest):
        reason = (
            f"drift: {unit.source_file} changed after it was applied "
            f"(checksum {latest.checksum[:12]} applied, {unit.checksum[:12]} now); restore the file, or "
            f"accept the new content as applied"
        )
        resolution = Resolution(State.MANUAL_MARKED_AS_APPLIED, accept_checksum=True)
        return Decision(unit, latest, NextAction.BLOCKED, reason, resolution)
    return Decision(unit, latest, NextAction.SKIP, "already applied")


def _decide_unfinished(unit: ChangeUnit, latest: AuditEntry) -> Decision:
    if latest.recovery is Recovery.ALWAYS_RETRY or unit.recovery is Recovery.ALWAYS_RETRY:
        return Decision(unit, latest, NextAction.APPLY, f"{latest.state.value}: recovery always_retry")
    reason = (
        f"{latest.state.value} in execution {latest.execution_id} and recovery is manual_intervention: check "
        f"target {latest.target or unit.target or '-'}; if the change is not fully in place, clean it up"
    )
    resolution = Resolution(State.MANUAL_MARKED_AS_ROLLED_BACK, alternative=State.MANUAL_MARKED_AS_APPLIED)
    return Decision(unit, latest, NextAction.BLOCKED, reason, resolution)


def drifted(unit: ChangeUnit, latest: AuditEntry) -> bool:
    """True when the unit file (or a payload file it references) changed since ``latest`` recorded it."""
    if not latest.checksum:
        return False
    return latest.checksum != unit.checksum or latest.payload_checksum != unit.payload_checksum


def plan_pipeline(
    pipeline: Pipeline,
    latest: Mapping[str, AuditEntry],
    *,
    markers: MarkerCheck | None = None,
    live_token: int | None = None,
) -> list[Decision]:
    """Decide every unit of ``pipeline`` in run order from one audit snapshot."""
    return [decide(u, latest.get(u.id), markers=markers, live_token=live_token) for u in pipeline.units]


def first_blocked(decisions: Sequence[Decision]) -> Decision | None:
    return next((d for d in decisions if d.action is NextAction.BLOCKED), None)
