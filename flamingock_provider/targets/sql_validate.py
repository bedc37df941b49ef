"""What ``validate`` says about SQL units once it knows their targets' connection types.

Parsing a pipeline reads only its folder; ``validate`` (the CLI, never the DAG parse) also looks
up each SQL target's connection type, where it can, to say per unit what MySQL/MariaDB cannot do
atomically: DDL commits implicitly, so a ``sql`` unit with DDL runs NON_TX there.
"""

from __future__ import annotations

from flamingock_provider.core.model import ChangeUnit, Pipeline
from flamingock_provider.exceptions import ValidationIssue
from flamingock_provider.targets.sql_connect import dialect_of


def sql_target_notes(pipeline: Pipeline) -> list[ValidationIssue]:
    """One warning per unit that runs NON_TX only because its target is MySQL/MariaDB."""
    dialects: dict[str, str | None] = {}
    notes = []
    for stage in pipeline.stages:
        for unit in stage.units:
            config = pipeline.target_of(unit)
            if config is None or unit.transactional is False or not _has_ddl(pipeline, unit):
                continue
            if config.name not in dialects:  # looked up only for units it could change
                dialects[config.name] = _dialect(config.conn_id)
            if dialects[config.name] == "mysql":
                notes.append(ValidationIssue(unit.source_file, _note(unit, config.name)))
    return notes


def _note(unit: ChangeUnit, target: str) -> str:
    return (
        f"change {unit.id!r} runs NON_TX on target {target!r} (MySQL/MariaDB): its DDL commits implicitly, so it "
        "cannot be atomic with its other statements or its audit entries; a failure midway leaves earlier "
        "statements applied and the unit FAILED. Keep one DDL statement per unit and give 'rollback:'"
    )


def _has_ddl(pipeline: Pipeline, unit: ChangeUnit) -> bool:
    if unit.kind != "template" or unit.template != "sql":
        return False
    from flamingock_provider.templates.sql import raw_statements
    from flamingock_provider.templates.sql_statements import commits_implicitly

    return any(commits_implicitly(s) for step in unit.steps for s in raw_statements(step.apply, pipeline.path))


def _dialect(conn_id: str) -> str | None:
    from flamingock_provider.targets.connections import get_connection

    try:
        return dialect_of(get_connection(conn_id).conn_type)
    except Exception:  # an unknown connection is reported when the unit runs, not by validate
        return None
