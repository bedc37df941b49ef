"""Markdown shown in the Airflow UI: the DAG's doc (pipeline, stages, units) and each task's doc."""

from __future__ import annotations

from flamingock_provider.core.model import ChangeUnit, Pipeline, Stage

MAX_LISTED_UNITS = 300  # beyond this the DAG doc lists stages only: a 10,000-row table helps nobody

TRIGGER_HELP = """\
**Trigger form** — `action`: `apply` (run pending changes), `plan` (show what apply would do;
no lock, no change) or `undo` (roll back the changes applied after `undo_to`, newest first).
"""


def dag_doc(pipeline: Pipeline) -> str:
    """Return the DAG's ``doc_md``: description, settings, and the stages with their units."""
    lines = [f"# Flamingock pipeline `{pipeline.id}`", ""]
    if pipeline.description:
        lines += [pipeline.description, ""]
    lines += [
        f"Folder `{pipeline.path.name}` · {len(pipeline.units)} changes in {len(pipeline.stages)} stages · "
        f"on failure: `{pipeline.on_failure.value}` · recovery: `{pipeline.recovery.value}` · "
        f"run mode: `{pipeline.run_mode.value}` · emits asset `flamingock://{pipeline.id}`",
        "",
        TRIGGER_HELP,
    ]
    listed = len(pipeline.units) <= MAX_LISTED_UNITS
    for stage in pipeline.stages:
        lines += _stage_section(stage, listed)
    return "\n".join(lines)


def _stage_section(stage: Stage, listed: bool) -> list[str]:
    after = f" · after {', '.join(stage.depends_on) or 'the plan'}" if stage.depends_on is not None else ""
    flags = " · runs after a failure" if stage.run_after_failure else ""
    when = f" · when `{stage.when}`" if stage.when else ""
    lines = [f"## Stage `{stage.name}` ({len(stage.units)} changes{after}{flags}{when})", ""]
    if stage.description:
        lines += [stage.description, ""]
    if not listed:
        return lines
    lines += ["| change | author | type | target | file |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| `{u.id}` | {u.author} | {u.change_type} | {u.target or '-'} | `{u.source_file}` |" for u in stage.units
    ]
    return [*lines, ""]


def unit_doc(pipeline: Pipeline, unit: ChangeUnit) -> str:
    """Return a unit task's ``doc_md``."""
    target = unit.target or pipeline.default_target or "-"
    lines = [f"**Change `{unit.id}`**", ""]
    if unit.description:
        lines += [unit.description, ""]
    lines += [
        f"- author: {unit.author}",
        f"- type: {unit.change_type}",
        f"- target: {target}",
        f"- file: `{unit.source_file}`",
        f"- recovery: {unit.recovery.value}" + (" · runs always" if unit.run_always else ""),
    ]
    if unit.when:
        lines.append(f"- when: `{unit.when}`")
    return "\n".join(lines)


def stage_doc(stage: Stage) -> str:
    """Return the ``doc_md`` of a stage task (``task_per_stage`` mode)."""
    units = "\n".join(f"- `{u.id}` ({u.change_type}, `{u.source_file}`)" for u in stage.units)
    return f"**Stage `{stage.name}`**: its changes, in order\n\n{units}"
