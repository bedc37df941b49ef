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
from flamingock_provider.core.risk import IMPACT_LEVELS, UnitRisk, assess_unit
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
    ``impact_timeout`` seconds each; None without ``targets``) and with ``sql`` the ``rendered`` payload."""
    from flamingock_provider.core import preview

    risks = {r.unit_id: r for r in pipeline_risks(pipeline)}
    out: dict[str, dict[str, Any]] = {}
    for d in decisions:
        risk = risks[d.unit.id]
        item: dict[str, Any] = {"risk": risk.level.value, "reasons": risk.to_json()["reasons"], "impact": None}
        if targets is not None and d.action is NextAction.APPLY and risk.level in IMPACT_LEVELS:
            item["impact"] = preview.impact(pipeline, d.unit, targets, renderer, timeout=impact_timeout)
        if sql:
            item["rendered"] = preview.rendered(pipeline, d.unit, renderer)
        out[d.unit.id] = item
    return out
