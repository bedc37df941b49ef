"""What the Flamingock view shows: every pipeline under a changes folder, read from its audit store.

Plain data, no Airflow and no HTML: one :class:`PipelineOverview` per pipeline folder with each
unit's state and next action (the fix command of a blocked unit), the lease holder and the recent
audit history. A pipeline that fails validation, or whose store cannot be read, carries its errors
instead; it never hides the others.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flamingock_provider.commandline import decision_json
from flamingock_provider.core.model import APPLIED_STATES, AuditEntry, LeaseInfo, NextAction, Pipeline
from flamingock_provider.core.plan import Decision
from flamingock_provider.exceptions import PipelineValidationError

log = logging.getLogger("flamingock.view")
HISTORY_LIMIT = 50
IMPACT_TIMEOUT_S = 2.0  # per pending risky unit: the page must stay quick


@dataclass(frozen=True)
class UnitRow:
    id: str
    stage: str
    state: str | None
    action: str
    reason: str | None
    fix: str | None
    risk: str | None = None
    reasons: tuple[str, ...] = ()
    impact: str | None = None

    @property
    def applied(self) -> bool:
        return self.state in {s.value for s in APPLIED_STATES}


@dataclass(frozen=True)
class HistoryRow:
    created_at: str
    change_id: str
    state: str
    action: str
    run: str
    error: str | None
    approved_by: str | None = None
    bundle_version: str | None = None


@dataclass(frozen=True)
class PipelineOverview:
    folder: str  # the pipeline folder's name under the changes folder
    path: str  # the folder as the fix commands name it
    pipeline_id: str
    dag_id: str
    description: str = ""
    units: tuple[UnitRow, ...] = ()
    lease: dict[str, Any] | None = None
    history: tuple[HistoryRow, ...] = ()  # newest first, at most HISTORY_LIMIT
    history_total: int = 0
    errors: tuple[str, ...] = field(default=())

    @property
    def blocked(self) -> tuple[UnitRow, ...]:
        return tuple(u for u in self.units if u.action == NextAction.BLOCKED.value)

    @property
    def applied_ids(self) -> tuple[str, ...]:
        return tuple(u.id for u in self.units if u.applied)

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "path": self.path,
            "pipeline": self.pipeline_id,
            "dag_id": self.dag_id,
            "description": self.description,
            "lock": self.lease,
            "changes": [{**u.__dict__, "reasons": list(u.reasons)} for u in self.units],
            "history": [h.__dict__ for h in self.history],
            "history_total": self.history_total,
            "errors": list(self.errors),
        }


def default_changes_root() -> Path:
    """``[flamingock] changes_folder`` if set, else ``<dags_folder>/changes``."""
    from airflow.configuration import conf

    configured = conf.get("flamingock", "changes_folder", fallback=None)
    if configured:
        return Path(configured).expanduser()
    return Path(conf.get("core", "dags_folder")).expanduser() / "changes"


def overview(changes_root: str | os.PathLike[str]) -> list[PipelineOverview]:
    """Return one overview per pipeline folder under ``changes_root`` (sorted by folder name)."""
    from flamingock_provider.core.loader import discover_pipelines

    return [pipeline_overview(folder) for folder in discover_pipelines(changes_root)]


def pipeline_overview(folder: Path) -> PipelineOverview:
    """Read one pipeline's units, lease and history; a failure becomes the overview's errors."""
    from flamingock_provider.commands import workspace
    from flamingock_provider.dag_factory.builder import dag_id_for

    fallback_id = folder.name.lower().replace("-", "_")
    try:
        with workspace(folder) as ws:
            snapshot, holder = ws.observe()
            decisions = ws.engine().plan(snapshot, live_token=holder.token if holder else None)
            entries = ws.store.history(ws.pipeline.id)
            pipeline = ws.pipeline
        details = _details(pipeline, decisions)
    except PipelineValidationError as err:
        errors = tuple(f"{issue.file}: {issue.message}" if issue.file else issue.message for issue in err.issues)
        return PipelineOverview(folder.name, str(folder), fallback_id, dag_id_for(fallback_id), errors=errors)
    except Exception as err:  # a store that cannot be read must not hide the other pipelines
        message = f"cannot read the audit store: {type(err).__name__}: {err}"
        return PipelineOverview(folder.name, str(folder), fallback_id, dag_id_for(fallback_id), errors=(message,))
    return PipelineOverview(
        folder=folder.name,
        path=str(folder),
        pipeline_id=pipeline.id,
        dag_id=dag_id_for(pipeline.id),
        description=pipeline.description or "",
        units=tuple(_unit_row(decision_json(str(folder), d), details.get(d.unit.id, {})) for d in decisions),
        lease=_lease(holder),
        history=tuple(_history_row(e) for e in reversed(entries[-HISTORY_LIMIT:])),
        history_total=len(entries),
    )


def _details(pipeline: Pipeline, decisions: list[Decision]) -> dict[str, dict[str, Any]]:
    """Risk, reasons and impact per unit; a failure leaves the columns empty, never the page."""
    from flamingock_provider.targets import open_target
    from flamingock_provider.targets.risk import plan_details

    try:
        return plan_details(pipeline, decisions, targets=open_target, renderer=None, impact_timeout=IMPACT_TIMEOUT_S)
    except Exception:
        log.warning("risk of pipeline %s not shown", pipeline.id, exc_info=True)
        return {}


def _unit_row(data: dict[str, Any], details: dict[str, Any]) -> UnitRow:
    return UnitRow(
        id=str(data["id"]),
        stage=str(data["stage"]),
        state=str(data["state"]) if data["state"] else None,
        action=str(data["action"]),
        reason=str(data["reason"]) if data["reason"] else None,
        fix=str(data["fix"]) if data["fix"] else None,
        risk=details.get("risk"),
        reasons=tuple(details.get("reasons", ())),
        impact=details.get("impact"),
    )


def _lease(holder: LeaseInfo | None) -> dict[str, Any] | None:
    return None if holder is None else holder.to_dict()


def _history_row(entry: AuditEntry) -> HistoryRow:
    run = entry.run_id or entry.triggered_by or entry.execution_id
    error = f"{entry.error.type}: {entry.error.message}" if entry.error else None
    return HistoryRow(
        created_at=entry.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        change_id=entry.change_id,
        state=entry.state.value,
        action=entry.action.value,
        run=str(run),
        error=error,
        approved_by=entry.approved_by,
        bundle_version=entry.bundle_version,
    )
