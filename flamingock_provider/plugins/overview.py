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
from flamingock_provider.core.plan import ALREADY_APPLIED, Decision
from flamingock_provider.exceptions import PipelineValidationError
from flamingock_provider.plugins.fleet_view import FleetMatrix, fleet_matrix

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
    changed_at: str | None = None  # when its latest entry was written (UTC)
    dag_id: str | None = None  # the DAG run that wrote it, if Airflow did
    run_id: str | None = None
    who: str | None = None  # triggered_by, and approved_by when the entry has one

    @property
    def note(self) -> str | None:
        """The fix command, or a reason worth reading (not the plain "already applied")."""
        if self.fix:
            return self.fix
        return self.reason if self.reason and self.reason != ALREADY_APPLIED else None

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
    dag_id: str | None = None
    run_id: str | None = None
    approved_by: str | None = None
    bundle_version: str | None = None


@dataclass(frozen=True)
class PipelineOverview:
    folder: str  # the pipeline folder's name under the changes folder
    path: str  # the folder as the fix commands name it: relative to the DAGs folder, never absolute
    pipeline_id: str
    dag_id: str
    description: str = ""
    units: tuple[UnitRow, ...] = ()
    lease: dict[str, Any] | None = None
    history: tuple[HistoryRow, ...] = ()  # newest first, at most HISTORY_LIMIT
    history_total: int = 0
    errors: tuple[str, ...] = field(default=())
    fleet: FleetMatrix | None = None  # a fleet pipeline: its member-by-change matrix (SPEC §13)

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
            "changes": [{**u.__dict__, "reasons": list(u.reasons), "note": u.note} for u in self.units],
            "history": [h.__dict__ for h in self.history],
            "history_total": self.history_total,
            "errors": list(self.errors),
            "fleet": self.fleet.to_json() if self.fleet else None,
        }


def dags_folder() -> Path:
    """Airflow's ``[core] dags_folder``: the view shows paths relative to it."""
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder")).expanduser()


def default_changes_root() -> Path:
    """``[flamingock] changes_folder`` if set, else ``<dags_folder>/changes``."""
    from airflow.configuration import conf

    configured = conf.get("flamingock", "changes_folder", fallback=None)
    if configured:
        return Path(configured).expanduser()
    return dags_folder() / "changes"


def shown_path(path: str | os.PathLike[str], base: str | os.PathLike[str] | None) -> str:
    """``path`` as a reader sees it: relative to ``base`` (the DAGs folder), or only its name when outside it."""
    absolute = Path(path).resolve()
    if base is not None:
        try:
            return absolute.relative_to(Path(base).resolve()).as_posix() or "."
        except ValueError:
            pass
    return absolute.name


def overview(
    changes_root: str | os.PathLike[str], base: str | os.PathLike[str] | None = None
) -> list[PipelineOverview]:
    """Return one overview per pipeline folder under ``changes_root`` (sorted by folder name).

    ``base``: the folder the shown paths are relative to (the DAGs folder); default ``changes_root``'s parent.
    """
    from flamingock_provider.core.loader import discover_pipelines

    base = Path(changes_root).parent if base is None else base
    return [pipeline_overview(folder, base) for folder in discover_pipelines(changes_root)]


def pipeline_overview(folder: Path, base: str | os.PathLike[str] | None = None) -> PipelineOverview:
    """Read one pipeline's units, lease and history; a failure becomes the overview's errors."""
    from flamingock_provider.commands import workspace
    from flamingock_provider.dag_factory.builder import dag_id_for

    fallback_id = folder.name.lower().replace("-", "_")
    shown = shown_path(folder, folder.parent if base is None else base)
    try:
        with workspace(folder) as ws:
            snapshot, holder = ws.observe()
            decisions = ws.engine().plan(snapshot, live_token=holder.token if holder else None)
            entries = ws.store.history(ws.pipeline.id)
            pipeline = ws.pipeline
            fleet = fleet_matrix(ws) if pipeline.fleet is not None else None
        details = _details(pipeline, decisions) if fleet is None else {}
    except PipelineValidationError as err:
        errors = tuple(f"{issue.file}: {issue.message}" if issue.file else issue.message for issue in err.issues)
        return PipelineOverview(folder.name, shown, fallback_id, dag_id_for(fallback_id), errors=errors)
    except Exception as err:  # a store that cannot be read must not hide the other pipelines
        message = f"cannot read the audit store: {type(err).__name__}: {err}"
        return PipelineOverview(folder.name, shown, fallback_id, dag_id_for(fallback_id), errors=(message,))
    return PipelineOverview(
        folder=folder.name,
        path=shown,
        pipeline_id=pipeline.id,
        dag_id=dag_id_for(pipeline.id),
        description=pipeline.description or "",
        units=()
        if fleet
        else tuple(_unit_row(decision_json(shown, d), details.get(d.unit.id, {}), d.latest) for d in decisions),
        lease=_lease(holder),
        history=tuple(_history_row(e) for e in reversed(entries[-HISTORY_LIMIT:])),
        history_total=len(entries),
        fleet=fleet,
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


def _unit_row(data: dict[str, Any], details: dict[str, Any], latest: AuditEntry | None = None) -> UnitRow:
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
        changed_at=_when(latest) if latest else None,
        dag_id=latest.dag_id if latest else None,
        run_id=latest.run_id if latest else None,
        who=_who(latest) if latest else None,
    )


def _when(entry: AuditEntry) -> str:
    return entry.created_at.strftime("%Y-%m-%d %H:%M:%S")


def _who(entry: AuditEntry) -> str | None:
    """Who caused the entry: its trigger, and the approver once approvals record one (SPEC §14)."""
    approved_by = getattr(entry, "approved_by", None)
    parts = [entry.triggered_by, f"approved by {approved_by}" if approved_by else None]
    return " · ".join(p for p in parts if p) or None


def _lease(holder: LeaseInfo | None) -> dict[str, Any] | None:
    return None if holder is None else holder.to_dict()


def _history_row(entry: AuditEntry) -> HistoryRow:
    run = entry.run_id or entry.triggered_by or entry.execution_id
    error = f"{entry.error.type}: {entry.error.message}" if entry.error else None
    return HistoryRow(
        created_at=_when(entry),
        change_id=entry.change_id,
        state=entry.state.value,
        action=entry.action.value,
        run=str(run),
        error=error,
        dag_id=entry.dag_id,
        run_id=entry.run_id,
        approved_by=entry.approved_by,
        bundle_version=entry.bundle_version,
    )
