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


ALREADY_APPLIED = "already applied"  # the plain reason of a unit that is done: nothing more to say

# What an earlier plan said, per change id: only its "nothing to do" answers are ever used.
Hint = Mapping[str, Decision]


def hinted_done(units: Sequence[ChangeUnit], hint: Hint | None) -> bool:
    """True when an earlier plan found every one of ``units`` done, so a task may skip them unread."""
    if not hint or not units:
        return False
    return all(u.id in hint and hint[u.id].nothing_to_do for u in units)


@dataclass(frozen=True)
class ActionRule:
    """What the tasks of a run may do for its ``action`` (SPEC §10): each task's state says which.

    ======================  ===================  ====================  ===================
    task                    apply                plan                  undo
    ======================  ===================  ====================  ===================
    lock                    success: lease       success: no lease     success: lease
    plan                    success              success               success
    ``<stage>.apply_*``     success / skipped    skipped               skipped
    ``<stage>.rollback``    success on a         skipped               skipped
                            failure, else
                            skipped
    undo                    skipped              skipped               success: checked
    ``<stage>.undo``        skipped              skipped               success: rolled
                                                                       back, else skipped
    complete                success (asset) /    success               success / upstream
                            upstream_failed                            _failed
    release                 success: released    skipped: no lease     success: released
    ======================  ===================  ====================  ===================

    A failed task always means that something failed; ``complete`` fails the run after any failure,
    even when the compensation succeeded. The lock task passes in a ``plan`` run rather than ending
    skipped: Airflow requires the task after a setup task to run ``all_success``, so a skipped lock
    would skip the plan task too; the release task, with no lease to release, ends skipped.
    """

    takes_lease: bool  # the lock task takes the lease (else it passes through, and release ends skipped)
    applies: bool  # unit tasks and rollback tasks may run
    undoes: bool  # the undo tasks may run
    emits_asset: bool  # complete emits flamingock://<pipeline>
    rehearses: bool = False  # the rehearse task runs (scratch targets only, SPEC §14)


ACTION_RULES: Mapping[str, ActionRule] = {
    "apply": ActionRule(takes_lease=True, applies=True, undoes=False, emits_asset=True),
    "plan": ActionRule(takes_lease=False, applies=False, undoes=False, emits_asset=False),
    "undo": ActionRule(takes_lease=True, applies=False, undoes=True, emits_asset=False),
    # only where pipeline.yaml has rehearsal.scratch: the real pipeline's lease is not taken (the
    # rehearsal keeps its own in a throwaway store) and nothing but the rehearse task runs
    "rehearse": ActionRule(takes_lease=False, applies=False, undoes=False, emits_asset=False, rehearses=True),
}


def run_label(action: str | None, undo_to: str | None = None) -> str:
    """Say what a run does in a few words (its note in Airflow): ``apply``, ``plan``, ``undo to 0003_x``."""
    action = action or "apply"
    if action == "undo":
        return f"undo to {undo_to}" if undo_to else "undo (no undo_to: fails at once)"
    return action


def action_rule(action: str) -> ActionRule:
    """Return the rule of ``action``; an unknown action is a ``KeyError`` (the trigger form offers only these)."""
    return ACTION_RULES[action]


@dataclass(frozen=True)
class Skips:
    """What a run has nothing to do for: its tasks may be skipped before they start (SPEC §10).

    ``units``: change ids with nothing to do in this run; ``rollbacks``: stages whose rollback task
    cannot find a failure (none of their units runs); ``undo``: the undo entry task is idle;
    ``undo_stages``: stages whose undo task has nothing to roll back (or must not start first);
    ``rehearse``: the rehearse task is idle (every run but a ``rehearse`` one).
    """

    units: frozenset[str] = frozenset()
    rollbacks: frozenset[str] = frozenset()
    undo: bool = False
    undo_stages: frozenset[str] = frozenset()
    rehearse: bool = True

    def stage_idle(self, stage: Stage) -> bool:
        """True when no unit of ``stage`` runs (its one task in ``task_per_stage`` mode may be skipped)."""
        return all(u.id in self.units for u in stage.units)


def run_skips(
    stages: Sequence[Stage],
    decisions: Sequence[Decision],
    action: str,
    inactive: Collection[str] = (),
    undo: Sequence[ChangeUnit] = (),
) -> Skips:
    """Decide which tasks of a run cannot do anything, from the plan made under the run's lease.

    ``stages`` in run order; ``action`` is the run's (see :class:`ActionRule`); ``inactive`` holds
    the change ids whose own or stage ``when:`` is false; ``undo`` the units an undo run rolls back.
    A unit has work when its decision is anything but "nothing to do" (apply, a reconcile to
    record, a blocked unit that must fail its task) and it is active; a unit without a decision has
    work (its task decides).

    Only the idle tasks *before* the first with work are skipped: a failure must still stop every
    later one, and in Airflow it reaches them only through tasks that are not finished yet (a task
    already skipped passes nothing on). Later idle tasks skip themselves when they start. Units go
    in run order; stage undo tasks newest stage first. A stage's rollback task is skipped when no
    unit of the stage has work: it can find no failure there. Only a ``rehearse`` run starts the
    rehearse task.
    """
    rule = action_rule(action)
    every = [u.id for s in stages for u in s.units]
    names = frozenset(s.name for s in stages)
    undone = {u.id for u in undo}
    busy = {s.name for s in stages if any(u.id in undone for u in s.units)}
    skip_undo = _leading([s.name for s in reversed(stages)], busy) if rule.undoes else names
    if not rule.applies:
        return Skips(
            frozenset(every),
            names,
            undo=not rule.undoes or not undo,
            undo_stages=skip_undo,
            rehearse=not rule.rehearses,
        )
    done = {d.unit.id for d in decisions if d.nothing_to_do}
    idle = {uid for uid in every if uid in done or uid in inactive}
    units = _leading(every, {uid for uid in every if uid not in idle})
    rollbacks = frozenset(s.name for s in stages if all(u.id in idle for u in s.units))
    return Skips(units, rollbacks, True, skip_undo, rehearse=not rule.rehearses)


def _leading(ordered: Sequence[str], busy: Collection[str]) -> frozenset[str]:
    """The items of ``ordered`` before the first one in ``busy`` (all of them when none is)."""
    first = next((i for i, item in enumerate(ordered) if item in busy), len(ordered))
    return frozenset(ordered[:first])


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
    return Decision(unit, latest, NextAction.SKIP, ALREADY_APPLIED)


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
