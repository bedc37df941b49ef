"""Risk levels of change units (SPEC §14): what a unit would do to existing data and to its readers.

Each template reports the risk of one apply payload through ``Template.risk(apply, dialect=...)`` as
``(level, reason)`` pairs; this module turns those into a unit's level and reasons, and applies the
``risk:`` / ``RISK`` a unit declares. Pure: no drivers, no I/O except reading a unit's ``file:`` payloads.

Order: safe < rewrite < locking < unknown < destructive. A unit gets the highest level of its apply
steps; its reasons name every statement or operation above ``safe``. A declared level stands only
where the analysis says ``unknown``; declaring less than the analysis found is a validation warning.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flamingock_provider.core.model import ChangeUnit


class RiskLevel(str, enum.Enum):
    SAFE = "safe"
    REWRITE = "rewrite"
    LOCKING = "locking"
    UNKNOWN = "unknown"
    DESTRUCTIVE = "destructive"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, RiskLevel):
            return NotImplemented
        return self.rank < other.rank


_RANK = {level: n for n, level in enumerate(RiskLevel)}
LEVELS = tuple(level.value for level in RiskLevel)
# Risk levels that get an impact estimate in `plan` (SPEC §14).
IMPACT_LEVELS = frozenset({RiskLevel.REWRITE, RiskLevel.DESTRUCTIVE})


@dataclass(frozen=True)
class Finding:
    """One statement's or operation's level, with a reason naming it."""

    level: RiskLevel
    reason: str


@dataclass(frozen=True)
class UnitRisk:
    """A unit's level and reasons; ``analysed`` is what the statements alone say."""

    unit_id: str
    level: RiskLevel
    reasons: tuple[str, ...]
    analysed: RiskLevel
    declared: RiskLevel | None = None
    warning: str | None = None  # a declared level lower than the analysis
    notes: tuple[str, ...] = field(default=())  # e.g. "SQL read in the generic dialect"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.unit_id, "risk": self.level.value, "reasons": [*self.notes, *self.reasons]}


def parse_level(value: Any) -> RiskLevel | None:
    """Return the level named by ``value``, or None when it names none."""
    try:
        return RiskLevel(str(value).strip().lower())
    except ValueError:
        return None


def findings(pairs: Iterable[tuple[str, str]]) -> list[Finding]:
    """Turn a template's ``(level, reason)`` pairs into findings; an unknown level counts as unknown."""
    out = []
    for level, reason in pairs:
        parsed = parse_level(level)
        if parsed is None:
            out.append(Finding(RiskLevel.UNKNOWN, f"{reason} (the template reported level {level!r})"))
        else:
            out.append(Finding(parsed, reason))
    return out


def aggregate(found: Sequence[Finding]) -> tuple[RiskLevel, tuple[str, ...]]:
    """The highest level of ``found`` and the reasons of every finding above safe, in order."""
    if not found:
        return RiskLevel.SAFE, ()
    level = max(found, key=lambda f: f.level.rank).level
    reasons = tuple(dict.fromkeys(f"{f.level.value}: {f.reason}" for f in found if f.level is not RiskLevel.SAFE))
    return level, reasons


def resolve(unit_id: str, found: Sequence[Finding], declared: RiskLevel | None, notes: Sequence[str] = ()) -> UnitRisk:
    """Apply the declared-level rule to the analysis of one unit."""
    analysed, reasons = aggregate(found)
    if declared is None:
        return UnitRisk(unit_id, analysed, reasons, analysed, None, None, tuple(notes))
    # What the analysis could read: everything but the unknown statements.
    known, _ = aggregate([f for f in found if f.level is not RiskLevel.UNKNOWN])
    floor = known if analysed is RiskLevel.UNKNOWN else analysed
    warning = None
    if declared < floor:
        warning = (
            f"change {unit_id!r}: field 'risk': declared {declared.value!r} but the analysis found "
            f"{floor.value!r} ({'; '.join(r for r in reasons if not r.startswith('unknown:'))}); the analysed "
            f"level stands: declare {floor.value!r} or remove 'risk:'"
        )
    if analysed is RiskLevel.UNKNOWN:
        level = max(declared, known, key=lambda lv: lv.rank)
        why = f"declared: risk {declared.value} where the analysis could not tell"
        return UnitRisk(unit_id, level, (*reasons, why), analysed, declared, warning, tuple(notes))
    if analysed < declared:  # a higher declaration is the author's knowledge: keep the more careful level
        why = f"declared: risk {declared.value}, above what the analysis found"
        return UnitRisk(unit_id, declared, (*reasons, why), analysed, declared, None, tuple(notes))
    return UnitRisk(unit_id, analysed, reasons, analysed, declared, warning, tuple(notes))


# -- units --------------------------------------------------------------------------------------


def assess_unit(unit: ChangeUnit, root: Path, *, dialect: str | None = None, notes: Sequence[str] = ()) -> UnitRisk:
    """The risk of one change unit of the pipeline in ``root``, its SQL read in ``dialect``."""
    declared = parse_level(unit.risk) if unit.risk else None
    if unit.kind == "python":
        found = [Finding(RiskLevel.UNKNOWN, f"Python unit {unit.source_file}: its code is not analysed")]
        return resolve(unit.id, found, declared)
    from flamingock_provider.core.template import get_template

    try:
        template = get_template(unit.template or "")
    except (KeyError, ImportError) as err:
        found = [Finding(RiskLevel.UNKNOWN, f"template {unit.template!r} cannot be loaded here: {err}")]
        return resolve(unit.id, found, declared)
    found = []
    many = len(unit.steps) > 1
    for n, step in enumerate(unit.steps):
        payload = inline_files(template.target_kind, step.apply, root)
        pairs = _template_risk(template, payload, dialect)
        found += [Finding(f.level, f"steps[{n}]: {f.reason}" if many else f.reason) for f in findings(pairs)]
    used_notes = notes if template.target_kind == "sql" else ()
    return resolve(unit.id, found, declared, used_notes)


def _template_risk(template: Any, payload: Mapping[str, Any], dialect: str | None) -> list[tuple[str, str]]:
    risk = getattr(template, "risk", None)
    if risk is None:
        return [(RiskLevel.UNKNOWN.value, f"template {template.name!r} reports no risk; declare 'risk:'")]
    try:
        return list(risk(payload, dialect=dialect))
    except Exception as err:  # a custom template's analysis must not break validate
        return [(RiskLevel.UNKNOWN.value, f"template {template.name!r}: risk analysis failed: {err}")]


def inline_files(target_kind: str, apply: Mapping[str, Any], root: Path) -> Mapping[str, Any]:
    """For SQL, replace ``file: files/x.sql`` by the statements it holds (the parser needs the text)."""
    ref = apply.get("file")
    if target_kind != "sql" or not isinstance(ref, str):
        return apply
    try:
        text = (root / ref).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return apply  # the loader reports the unreadable file
    return {**{k: v for k, v in apply.items() if k != "file"}, "statements": text}
