"""Risk of every unit of a pipeline, its SQL read in each target's dialect (SPEC §14).

The dialect comes from the target connection's type when that is known without a network call
(an ``AIRFLOW_CONN_*`` variable); otherwise the SQL is read in sqlglot's generic dialect and the
unit's reasons say so. Parse-time safe: no driver, no Airflow import.
"""

from __future__ import annotations

from functools import cache

from flamingock_provider.core.model import ChangeUnit, Pipeline
from flamingock_provider.core.risk import UnitRisk, assess_unit
from flamingock_provider.targets.connections import offline_conn_type
from flamingock_provider.templates._sql_risk import dialect_of


def unit_dialect(pipeline: Pipeline, unit: ChangeUnit) -> tuple[str | None, tuple[str, ...]]:
    """The SQL dialect of ``unit``'s target, and a note when it had to be generic."""
    config = pipeline.target_of(unit)
    if config is None:
        return None, ("SQL read in the generic dialect: the unit has no target",)
    conn_type = _conn_type(config.conn_id)
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


@cache
def _conn_type(conn_id: str) -> str | None:
    return offline_conn_type(conn_id)


def unit_risk(pipeline: Pipeline, unit: ChangeUnit) -> UnitRisk:
    """The risk of one unit (what its audit entries record)."""
    dialect, notes = unit_dialect(pipeline, unit) if unit.kind == "template" else (None, ())
    return assess_unit(unit, pipeline.path, dialect=dialect, notes=notes)


def pipeline_risks(pipeline: Pipeline) -> list[UnitRisk]:
    """The risk of every unit, in run order."""
    _conn_type.cache_clear()  # connections may change between two calls in one process
    return [unit_risk(pipeline, unit) for unit in pipeline.units]
