"""The ``flamingock`` commands as plain functions returning the SPEC §11 JSON documents.

Embed the runner in an application or a service without Airflow::

    from flamingock_provider import commands
    result = commands.apply("dags/changes/warehouse")

Errors are :class:`~flamingock_provider.exceptions.FlamingockError` subclasses whose ``exit_code``
the CLI uses; ``apply``/``undo`` report a failed or blocked unit in the result instead of raising.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from typing import Any

from flamingock_provider.commandline import FIX_STATES, decision_json, unlock_command
from flamingock_provider.core.approval import Approval
from flamingock_provider.core.loader import validate_pipeline
from flamingock_provider.core.model import LeaseInfo
from flamingock_provider.core.targets import TargetFactory
from flamingock_provider.core.workspace import Workspace, cli_renderer, holding, new_run, open_workspace
from flamingock_provider.exceptions import FlamingockError, UsageError

__all__ = [
    "Workspace",
    "apply",
    "fix",
    "history",
    "holding",
    "plan",
    "status",
    "undo",
    "undo_plan",
    "unlock",
    "validate",
    "workspace",
]

# Open a pipeline with its stores (the composition root's, re-exported for embedding applications).
workspace = open_workspace


def _lock_json(info: LeaseInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"owner": info.owner, "token": info.token, "expires_at": info.expires_at.isoformat()}


# -- commands ---------------------------------------------------------------------------------


def validate(pipeline_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and check a pipeline folder; list stages, units, risks, errors and warnings."""
    from flamingock_provider.targets.risk import pipeline_risks

    report = validate_pipeline(pipeline_dir)
    stages: list[dict[str, Any]] = []
    risks: list[dict[str, Any]] = []
    warnings = [{"file": i.file, "message": i.message} for i in report.warnings]
    if report.pipeline is not None:
        from flamingock_provider.targets.sql_validate import sql_target_notes

        stages = [{"name": s.name, "changes": [u.id for u in s.units]} for s in report.pipeline.stages]
        assessed = pipeline_risks(report.pipeline)
        risks = [r.to_json() for r in assessed]
        files = {u.id: u.source_file for u in report.pipeline.units}
        warnings += [{"file": files[r.unit_id], "message": r.warning} for r in assessed if r.warning]
        warnings += [{"file": i.file, "message": i.message} for i in sql_target_notes(report.pipeline)]
    return {
        "ok": not report.errors,
        "pipeline": report.pipeline.id if report.pipeline else None,
        "errors": [{"file": i.file, "message": i.message} for i in report.errors],
        "warnings": warnings,
        "stages": stages,
        "risks": risks,
    }


def status(pipeline_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Each unit's latest state, next action and risk, and the lock holder.

    Read without the lease: a unit the live holder is applying right now is ``running``, never blocked.
    """
    from flamingock_provider.targets.risk import plan_details

    with workspace(pipeline_dir) as ws:
        snapshot, holder = ws.observe()
        decisions = ws.engine().plan(snapshot, live_token=holder.token if holder else None)
    details = plan_details(ws.pipeline, decisions, targets=None, renderer=None)
    changes = [{**decision_json(ws.pipeline_dir, d), "risk": details[d.unit.id]["risk"]} for d in decisions]
    return {"pipeline": ws.pipeline.id, "lock": _lock_json(holder), "changes": changes}


def plan(
    pipeline_dir: str | os.PathLike[str],
    *,
    sql: bool = False,
    params: Mapping[str, Any] | None = None,
    targets: TargetFactory | None = None,
) -> dict[str, Any]:
    """What ``apply`` would do now, with each pending unit's risk and impact: no lock taken, nothing changed.

    ``sql``: add ``rendered``, the exact statements or payloads apply would send, rendered with ``params``.
    """
    from flamingock_provider.targets import open_target
    from flamingock_provider.targets.risk import plan_details

    with workspace(pipeline_dir) as ws:
        snapshot, holder = ws.observe()
        decisions = ws.engine().plan(snapshot, live_token=holder.token if holder else None)
    renderer = cli_renderer(new_run("plan", params))
    details = plan_details(ws.pipeline, decisions, targets=targets or open_target, renderer=renderer, sql=sql)
    changes = [{**decision_json(ws.pipeline_dir, d), **details[d.unit.id]} for d in decisions]
    return {"pipeline": ws.pipeline.id, "lock": _lock_json(holder), "changes": changes}


def undo_plan(
    pipeline_dir: str | os.PathLike[str],
    to: str | None = None,
    last: int | None = None,
    *,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``undo`` would roll back, newest first, and the rollbacks it would send: no lock, no change."""
    from flamingock_provider.core import preview
    from flamingock_provider.targets.risk import plan_details

    with workspace(pipeline_dir) as ws:
        snapshot, holder = ws.observe()
        engine = ws.engine()
        live = holder.token if holder else None
        units = engine.undo_targets(to, last, live_token=live, snapshot=snapshot)
        decisions = {d.unit.id: d for d in engine.plan(snapshot, live_token=live)}
    renderer = cli_renderer(new_run("plan", params))
    details = plan_details(ws.pipeline, [decisions[u.id] for u in units], targets=None, renderer=None)
    return {
        "pipeline": ws.pipeline.id,
        "undo": [
            {
                "id": u.id,
                "stage": u.stage,
                "risk": details[u.id]["risk"],
                "rollback": preview.rollbacks(ws.pipeline, u, renderer, decisions[u.id].latest),
            }
            for u in units
        ],
    }


def apply(
    pipeline_dir: str | os.PathLike[str],
    until: str | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    owner: str | None = None,
    approve: str | None = None,
) -> dict[str, Any]:
    """Apply pending units under the lease; the result says what was applied, skipped, failed or blocked.

    ``approve``: the approval note of a person saying yes to this run (``approved_by`` is the OS user).
    Without it, a run that would apply a unit needing approval (SPEC §14) raises
    :class:`~flamingock_provider.exceptions.ApprovalRequiredError` (exit 5) before any unit runs.
    """
    with workspace(pipeline_dir) as ws, holding(ws, owner) as lease:
        run = new_run(lease.owner, params, _approval(approve))
        return ws.engine(lease=lease, run=run).apply(until).to_json()


def _approval(note: str | None) -> Approval | None:
    return None if note is None else Approval(getpass.getuser(), note)


def undo(
    pipeline_dir: str | os.PathLike[str],
    to: str | None = None,
    last: int | None = None,
    *,
    owner: str | None = None,
    approve: str | None = None,
) -> dict[str, Any]:
    """Roll back applied units after ``to`` (or the last ``last``), newest first, under the lease.

    ``approve`` as for :func:`apply`: an undo that rolls back a unit needing approval refuses without it.
    """
    with workspace(pipeline_dir) as ws:
        snapshot, holder = ws.observe()  # bad arguments fail before waiting for the lease
        ws.engine().undo_targets(to, last, live_token=holder.token if holder else None, snapshot=snapshot)
        with holding(ws, owner) as lease:
            run = new_run(lease.owner, approval=_approval(approve))
            return ws.engine(lease=lease, run=run).undo(to, last).to_json()


def history(pipeline_dir: str | os.PathLike[str], change: str | None = None) -> dict[str, Any]:
    """Audit entries, oldest first."""
    with workspace(pipeline_dir) as ws:
        if change is not None:
            ws.engine().require_unit(change, "history of")
        entries = ws.store.history(ws.pipeline.id, change)
    return {"pipeline": ws.pipeline.id, "entries": [e.to_dict() for e in entries]}


def fix(
    pipeline_dir: str | os.PathLike[str],
    change_id: str,
    as_: str,
    accept_checksum: bool = False,
    *,
    owner: str | None = None,
) -> dict[str, Any]:
    """Resolve a blocked unit by recording it applied or rolled back, under the lease.

    ``as_`` is ``applied`` or ``rolled-back``. A unit the live lease holder is applying right now is
    refused at once: it is running, not stuck.
    """
    if as_ not in FIX_STATES:
        raise UsageError(f"--as must be one of {', '.join(FIX_STATES)}, got {as_!r}")
    with workspace(pipeline_dir) as ws:
        snapshot, holder = ws.observe()
        ws.engine().refuse_running(change_id, snapshot, holder)
        with holding(ws, owner) as lease:
            entry = ws.engine(lease=lease, run=new_run(lease.owner)).fix(change_id, FIX_STATES[as_], accept_checksum)
    return {
        "pipeline": ws.pipeline.id,
        "change_id": change_id,
        "state": entry.state.value,
        "entry": entry.to_dict(),
    }


def unlock(pipeline_dir: str | os.PathLike[str], force: bool = False) -> dict[str, Any]:
    """Clear a stale (expired) lease; with ``force`` also a live one."""
    with workspace(pipeline_dir) as ws:
        live = ws.leases.current(ws.pipeline.id)
        if live is not None and not force:
            raise FlamingockError(
                f"lease of pipeline {ws.pipeline.id!r} is live: held by {live.owner!r} until "
                f"{live.expires_at.isoformat()}; wait for it, or if that run is dead use "
                f"`{unlock_command(ws.pipeline_dir, force=True)}`"
            )
        previous = ws.leases.force_release(ws.pipeline.id)
    return {"pipeline": ws.pipeline.id, "released": previous is not None, "previous": _lock_json(previous)}
