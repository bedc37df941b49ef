"""Which runs wait for a person's yes (SPEC §14 approvals): the one place the rule lives.

A run needs approval when it would apply (or, in an undo run, roll back) a unit that the pipeline's
``approval.required`` names: ``always`` — any unit; ``destructive`` — a unit whose risk is destructive
or unknown (a level that cannot be computed counts as unknown); ``never`` — none. The engine applies
the rule under the lease, to the units it decided to run; the Airflow plan task only uses it as a hint
to decide whether to ask. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flamingock_provider.core.model import ApprovalConfig, ApprovalRequired, ChangeUnit
from flamingock_provider.core.risk import RiskLevel

# Levels that need approval under ``required: destructive``.
GATED_LEVELS = frozenset({RiskLevel.DESTRUCTIVE.value, RiskLevel.UNKNOWN.value})


@dataclass(frozen=True)
class Approval:
    """A person's yes to one run: who gave it and what they said."""

    by: str
    note: str


@dataclass(frozen=True)
class Gated:
    """A unit of this run that needs approval, with the risk level that made it so."""

    unit_id: str
    risk: str


def level_needs_approval(config: ApprovalConfig, risk: str | None) -> bool:
    """True when a unit of level ``risk`` (None: not computed, i.e. unknown) needs approval."""
    if config.required is ApprovalRequired.ALWAYS:
        return True
    if config.required is ApprovalRequired.DESTRUCTIVE:
        return (risk or RiskLevel.UNKNOWN.value) in GATED_LEVELS
    return False


def gated_units(
    config: ApprovalConfig, units: Iterable[ChangeUnit], risk_of: Callable[[ChangeUnit], str | None]
) -> list[Gated]:
    """The units of ``units`` (those a run would apply or undo) that need approval, in the given order."""
    if config.required is ApprovalRequired.NEVER:
        return []
    gated = []
    for unit in units:
        risk = risk_of(unit)
        if level_needs_approval(config, risk):
            gated.append(Gated(unit.id, risk or RiskLevel.UNKNOWN.value))
    return gated
