"""The planner: latest audit entry per change → what a run does with each unit (SPEC §7). No I/O."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from flamingock_provider.core.model import (
    APPLIED_STATES,
    REAPPLY_STATES,
    AuditEntry,
    ChangeUnit,
    NextAction,
    Pipeline,
    Recovery,
    State,
    TxStrategy,
)

# (unit, its STARTED entry) -> does the target hold the TX_SEPARATE marker of that execution?
MarkerCheck = Callable[[ChangeUnit, AuditEntry], bool]


@dataclass(frozen=True)
class Decision:
    unit: ChangeUnit
    latest: AuditEntry | None
    action: NextAction
    reason: str = ""
    fix: str | None = None
    reconcile: bool = False  # STARTED TX_SEPARATE whose marker committed: record APPLIED, then skip

    @property
    def state(self) -> State | None:
        return self.latest.state if self.latest else None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.unit.id,
            "stage": self.unit.stage,
            "state": self.state.value if self.state else None,
            "action": self.action.value,
            "reason": self.reason or None,
            "fix": self.fix,
        }


def fix_command(pipeline_dir: str, unit_id: str, as_: str, accept_checksum: bool = False) -> str:
    """Return the exact ``flamingock fix`` command line that resolves a blocked unit."""
    cmd = ["flamingock", "fix", pipeline_dir, unit_id, "--as", as_]
    if accept_checksum:
        cmd.append("--accept-checksum")
    return shlex.join(cmd)


def decide(
    unit: ChangeUnit,
    latest: AuditEntry | None,
    *,
    pipeline_dir: str,
    markers: MarkerCheck | None = None,
) -> Decision:
    """Apply SPEC §7's table to one unit."""
    state = latest.state if latest else None
    if latest is None or state in REAPPLY_STATES:
        reason = "its preconditions said no last time: they run again" if state is State.CHECK_FAILED else ""
        return Decision(unit, latest, NextAction.APPLY, reason)
    if state in APPLIED_STATES:
        return _decide_applied(unit, latest, pipeline_dir)
    if state is State.FAILED and latest.tx_strategy is not TxStrategy.NON_TX:
        return Decision(unit, latest, NextAction.APPLY, "the failed attempt was transactional: nothing committed")
    if state is State.STARTED and latest.tx_strategy is TxStrategy.TX_SEPARATE and markers is not None:
        if markers(unit, latest):
            return Decision(unit, latest, NextAction.SKIP, "committed before a crash: recorded APPLIED", None, True)
        return Decision(unit, latest, NextAction.APPLY, "crashed before its transaction committed")
    if state is State.STARTED and latest.tx_strategy is TxStrategy.TX_SHARED:
        return Decision(unit, latest, NextAction.APPLY, "shared transaction never committed")
    return _decide_unfinished(unit, latest, pipeline_dir)


def _decide_applied(unit: ChangeUnit, latest: AuditEntry, pipeline_dir: str) -> Decision:
    if unit.run_always:
        return Decision(unit, latest, NextAction.APPLY, "run_always")
    if drifted(unit, latest):
        reason = (
            f"drift: {unit.source_file} changed after it was applied "
            f"(checksum {latest.checksum[:12]} applied, {unit.checksum[:12]} now); restore the file, or "
            f"accept the new content as applied"
        )
        return Decision(unit, latest, NextAction.BLOCKED, reason, fix_command(pipeline_dir, unit.id, "applied", True))
    return Decision(unit, latest, NextAction.SKIP, "already applied")


def _decide_unfinished(unit: ChangeUnit, latest: AuditEntry, pipeline_dir: str) -> Decision:
    if latest.recovery is Recovery.ALWAYS_RETRY or unit.recovery is Recovery.ALWAYS_RETRY:
        return Decision(unit, latest, NextAction.APPLY, f"{latest.state.value}: recovery always_retry")
    reason = (
        f"{latest.state.value} in execution {latest.execution_id} and recovery is manual_intervention: check "
        f"target {latest.target or unit.target or '-'}; if the change is fully in place run "
        f"`{fix_command(pipeline_dir, unit.id, 'applied')}`, otherwise clean it up and mark it rolled back"
    )
    return Decision(unit, latest, NextAction.BLOCKED, reason, fix_command(pipeline_dir, unit.id, "rolled-back"))


def drifted(unit: ChangeUnit, latest: AuditEntry) -> bool:
    """True when the unit file (or a payload file it references) changed since ``latest`` recorded it."""
    if not latest.checksum:
        return False
    return latest.checksum != unit.checksum or latest.payload_checksum != unit.payload_checksum


def plan_pipeline(
    pipeline: Pipeline,
    latest: Mapping[str, AuditEntry],
    *,
    pipeline_dir: str | None = None,
    markers: MarkerCheck | None = None,
) -> list[Decision]:
    """Decide every unit of ``pipeline`` in run order from one audit snapshot."""
    shown = pipeline_dir or str(pipeline.path)
    return [decide(u, latest.get(u.id), pipeline_dir=shown, markers=markers) for u in pipeline.units]


def first_blocked(decisions: Sequence[Decision]) -> Decision | None:
    return next((d for d in decisions if d.action is NextAction.BLOCKED), None)
