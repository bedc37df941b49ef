"""Rollback rehearsal (SPEC §14): the phases and the comparison, as pure functions over plain data.

A snapshot is what a target looks like, normalised to ``{object: {fact: value}}``, e.g.
``{"table orders": {"column discount": "INTEGER NULL", "rows": 3}}``; a rehearsal's snapshot maps
each watched target name to one of those. The phases run through :class:`RehearsalSteps` (the
composition root, :mod:`core.rehearsing`, drives the real engine on scratch targets)::

    S0 ─ apply u1 ─ S1 ─ apply u2 ─ S2 ...  Sn      first apply, one unit at a time
    Sn ─ undo un ─ Un ... undo u1 ─ U1              undo newest first: undoing ui must give S(i-1)
    U1 ─ apply u1 ─ R1 ... apply un ─ Rn            second apply: applying ui again must give Si

Attribution: the differences after undoing ``ui`` (``Ui`` against ``S(i-1)``) that were not already
there after undoing the unit after it are ``ui``'s; the same for the second apply, starting from the
differences the whole undo left. So a unit is named for what *its* step changed, a wrong fact is
reported once (for the newest unit that left it), and a rehearsal of ``n`` watched units takes
``3n + 1`` snapshots. A failed first apply ends the rehearsal there (phase ``apply``): its compensation
may have rolled back more than that unit, so nothing after it compares. A unit whose target cannot be snapshotted (HTTP) still runs, in order, but takes
no snapshot and is listed in ``not_rehearsed``. A unit with no rollback cannot be undone: it is
reported (phase ``undo``, ``no rollback``), recorded rolled back so the older units can still be
undone, and recorded applied again (not re-run: it is still in place) for the second apply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Facts = Mapping[str, Mapping[str, Any]]  # object ("table orders") -> fact ("column discount") -> value
Snapshot = Mapping[str, Facts]  # watched target name -> its facts
Key = tuple[str, str, str]  # (target, object, fact); fact "" is the object itself
MAX_VALUE_CHARS = 120

# phase -> (extra object or fact, missing one, changed value): how a difference reads in that phase.
_WORDING = {
    "undo": ("still present", "missing after the rollback", "{now}, was {then} before"),
    "reapply": ("present only after the second apply", "missing after the second apply", "{now}, was {then} after the first apply"),
}  # fmt: skip


@dataclass(frozen=True)
class Mismatch:
    """One problem the rehearsal found: which unit, in which phase (apply, undo, reapply), what differs."""

    id: str
    phase: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "phase": self.phase, "detail": self.detail}


@dataclass
class RehearsalReport:
    """SPEC §14's rehearsal document; ``rehearsed`` and ``snapshots`` are extra keys."""

    pipeline: str
    rehearsed: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    not_rehearsed: list[str] = field(default_factory=list)
    snapshots: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "ok": self.ok,
            "mismatches": [m.to_json() for m in self.mismatches],
            "not_rehearsed": list(self.not_rehearsed),
            "rehearsed": list(self.rehearsed),
            "snapshots": self.snapshots,
        }


@dataclass(frozen=True)
class RehearsedUnit:
    """A pending unit as the rehearsal sees it: can it be undone, can its target be snapshotted."""

    id: str
    compensable: bool = True
    watched: bool = True


class RehearsalSteps(Protocol):
    """What a rehearsal does to the scratch targets and its throwaway audit store."""

    def snapshot(self) -> Snapshot:
        """Snapshot every watched target."""

    def apply(self, unit_id: str) -> str | None:
        """Apply the pending units up to ``unit_id``; return None, or why it failed."""

    def undo(self, unit_id: str) -> str | None:
        """Roll back ``unit_id`` (newest applied first); return None, or why it failed."""

    def mark(self, unit_id: str, applied: bool) -> None:
        """Record ``unit_id`` applied (or rolled back) by hand, running nothing."""


def differences(expected: Snapshot, actual: Snapshot, phase: str) -> dict[Key, str]:
    """Every fact of ``actual`` that is not as in ``expected``, with the detail ``phase`` reports it with."""
    extra, missing, changed = _WORDING[phase]
    found: dict[Key, str] = {}
    for target in sorted(set(expected) | set(actual)):
        before, after = expected.get(target, {}), actual.get(target, {})
        for obj in sorted(set(before) | set(after)):
            if obj not in before:
                found[(target, obj, "")] = f"{obj} {extra}"
            elif obj not in after:
                found[(target, obj, "")] = f"{obj} {missing}"
            else:
                found.update(_fact_differences(target, obj, before[obj], after[obj], (extra, missing, changed)))
    return found


def _fact_differences(
    target: str, obj: str, before: Mapping[str, Any], after: Mapping[str, Any], wording: tuple[str, str, str]
) -> dict[Key, str]:
    extra, missing, changed = wording
    found: dict[Key, str] = {}
    for fact in sorted(set(before) | set(after)):
        if fact not in before:
            found[(target, obj, fact)] = f"{obj}: {fact} {extra}"
        elif fact not in after:
            found[(target, obj, fact)] = f"{obj}: {fact} {missing}"
        elif before[fact] != after[fact]:
            text = changed.format(now=_show(after[fact]), then=_show(before[fact]))
            found[(target, obj, fact)] = f"{obj}: {fact} is {text}"
    return found


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def rehearse(pipeline: str, units: Sequence[RehearsedUnit], steps: RehearsalSteps) -> RehearsalReport:
    """Apply ``units`` one by one, undo them newest first, apply them again; report what did not match."""
    report = RehearsalReport(pipeline, not_rehearsed=[u.id for u in units if not u.watched])
    run = _Phases(report, steps)
    if not run.first_apply(units):
        return report  # its compensation may have rolled back more than the failed unit: nothing to compare
    report.rehearsed = [u.id for u in units if u.watched]
    if run.undo(units):
        run.second_apply(units)
    return report


@dataclass
class _Phases:
    report: RehearsalReport
    steps: RehearsalSteps
    after_apply: list[Snapshot] = field(default_factory=list)  # index i: after the first i units
    undone: Mapping[Key, str] = field(default_factory=dict)  # what the whole undo left different

    def snapshot(self) -> Snapshot:
        self.report.snapshots += 1
        return self.steps.snapshot()

    def problem(self, unit: RehearsedUnit, phase: str, detail: str) -> None:
        self.report.mismatches.append(Mismatch(unit.id, phase, detail))

    def first_apply(self, units: Sequence[RehearsedUnit]) -> bool:
        """Apply unit by unit, snapshotting after each; False when one failed."""
        self.after_apply = [self.snapshot()]
        for unit in units:
            error = self.steps.apply(unit.id)
            if error is not None:
                self.problem(unit, "apply", f"the first apply failed: {error}")
                return False
            self.after_apply.append(self.snapshot() if unit.watched else self.after_apply[-1])
        return True

    def undo(self, units: Sequence[RehearsedUnit]) -> bool:
        """Undo newest first, comparing each step with the snapshot before that unit; False if one failed."""
        known: dict[Key, str] = {}
        current = self.after_apply[-1]
        for index in reversed(range(len(units))):
            unit = units[index]
            if not unit.compensable:
                self.problem(unit, "undo", "no rollback: it cannot be undone, so it stays in place on the target")
                self.steps.mark(unit.id, applied=False)
                known = differences(self.after_apply[index], current, "undo")  # its effect, reported above
                continue
            error = self.steps.undo(unit.id)
            if error is not None:
                self.problem(unit, "undo", f"the rollback failed: {error}")
                return False
            if not unit.watched:
                continue
            current = self.snapshot()
            found = differences(self.after_apply[index], current, "undo")
            self._report_new(unit, "undo", found, known)
            known = found
        self.undone = differences(self.after_apply[0], current, "undo")
        return True

    def second_apply(self, units: Sequence[RehearsedUnit]) -> None:
        """Apply again unit by unit, comparing each step with the first apply's snapshot after it."""
        known: dict[Key, str] = dict(self.undone)
        for index, unit in enumerate(units, start=1):
            if not unit.compensable:
                self.steps.mark(unit.id, applied=True)
                continue
            error = self.steps.apply(unit.id)
            if error is not None:
                self.problem(unit, "reapply", f"the second apply failed: {error}")
                return
            if not unit.watched:
                continue
            found = differences(self.after_apply[index], self.snapshot(), "reapply")
            self._report_new(unit, "reapply", found, known)
            known = found

    def _report_new(self, unit: RehearsedUnit, phase: str, found: Mapping[Key, str], known: Mapping[Key, str]) -> None:
        for key, detail in found.items():
            if key not in known:
                self.problem(unit, phase, detail)
