"""Risk of every unit of a pipeline, its SQL read in each target's dialect (SPEC §14).

The dialect comes from the target connection's type when that is known without a network call
(an ``AIRFLOW_CONN_*`` variable); otherwise the SQL is read in sqlglot's generic dialect and the
unit's reasons say so. Parse-time safe: no driver, no Airflow import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flamingock_provider.core.context import StringRenderer
from flamingock_provider.core.model import ChangeUnit, NextAction, Pipeline
from flamingock_provider.core.plan import Decision
from flamingock_provider.core.risk import IMPACT_LEVELS, RiskLevel, UnitRisk, assess_unit, parse_level
from flamingock_provider.core.targets import TargetFactory
from flamingock_provider.targets.connections import offline_conn_type
from flamingock_provider.templates._sql_risk import dialect_of


def unit_dialect(pipeline: Pipeline, unit: ChangeUnit) -> tuple[str | None, tuple[str, ...]]:
    """The SQL dialect of ``unit``'s target, and a note when it had to be generic."""
    config = pipeline.target_of(unit)
    if config is None:
        return None, ("SQL read in the generic dialect: the unit has no target",)
    conn_type = offline_conn_type(config.conn_id)  # an env var parse: cheap, and never stale
    dialect = dialect_of(conn_type)
    if dialect is not None:
        return dialect, ()
    why = (
        f"connection {config.conn_id!r} is of type {conn_type!r}, not sqlite, postgres or mysql"
        if conn_type
        else f"the type of connection {config.conn_id!r} is not known without asking Airflow (no AIRFLOW_CONN_ "
        f"variable)"
    )
    return None, (f"SQL read in the generic dialect: {why}",)


def unit_risk(pipeline: Pipeline, unit: ChangeUnit) -> UnitRisk:
    """The risk of one unit (what its audit entries record)."""
    dialect, notes = unit_dialect(pipeline, unit) if unit.kind == "template" else (None, ())
    return assess_unit(unit, pipeline.path, dialect=dialect, notes=notes)


def pipeline_risks(pipeline: Pipeline) -> list[UnitRisk]:
    """The risk of every unit, in run order."""
    return [unit_risk(pipeline, unit) for unit in pipeline.units]


def plan_details(
    pipeline: Pipeline,
    decisions: Sequence[Decision],
    *,
    targets: TargetFactory | None,
    renderer: StringRenderer | None,
    sql: bool = False,
    impact_timeout: float = 10.0,
) -> dict[str, dict[str, Any]]:
    """Per unit id: ``risk``, ``reasons``, ``impact`` (pending rewrite/destructive units, read within
    ``impact_timeout`` seconds each; None without ``targets``) and with ``sql`` the ``rendered`` payload.

    A unit that is done and unchanged takes the level its latest audit entry recorded, so a plan of a
    long pipeline parses only what is pending.
    """
    from flamingock_provider.core import preview

    out: dict[str, dict[str, Any]] = {}
    for d in decisions:
        recorded = _recorded_level(d)
        if recorded is not None:  # done and unchanged: the level its audit entry recorded (no parsing)
            out[d.unit.id] = {"risk": recorded.value, "reasons": [], "impact": None}
        else:
            risk = unit_risk(pipeline, d.unit)
            out[d.unit.id] = {"risk": risk.level.value, "reasons": risk.to_json()["reasons"], "impact": None}
            if targets is not None and d.action is NextAction.APPLY and risk.level in IMPACT_LEVELS:
                out[d.unit.id]["impact"] = preview.impact(pipeline, d.unit, targets, renderer, timeout=impact_timeout)
        if sql:
            out[d.unit.id]["rendered"] = preview.rendered(pipeline, d.unit, renderer)
    return out


def _recorded_level(decision: Decision) -> RiskLevel | None:
    """The risk an unchanged, skipped unit's latest entry recorded; None when it must be analysed."""
    entry, unit = decision.latest, decision.unit
    if decision.action is NextAction.APPLY or entry is None or not entry.risk:
        return None
    if entry.checksum != unit.checksum or entry.payload_checksum != unit.payload_checksum:
        return None
    return parse_level(entry.risk)
