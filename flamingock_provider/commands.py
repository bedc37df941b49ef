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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flamingock_provider.commandline import FIX_STATES, decision_json, unlock_command
from flamingock_provider.core.approval import Approval
from flamingock_provider.core.context import StringRenderer
from flamingock_provider.core.lease import cli_owner
from flamingock_provider.core.loader import validate_pipeline
from flamingock_provider.core.plan import Decision
from flamingock_provider.core.targets import TargetFactory
from flamingock_provider.core.workspace import (
    Workspace,
    cli_renderer,
    holding,
    member_view,
    new_run,
    open_workspace,
)
from flamingock_provider.exceptions import FlamingockError, UsageError
from flamingock_provider.fleet_commands import apply_fleet, apply_member, fleet_matrix, lock_json

__all__ = [
    "Workspace",
    "apply",
    "fix",
    "history",
    "holding",
    "plan",
    "rehearse",
    "status",
    "undo",
    "undo_plan",
    "unlock",
    "validate",
    "workspace",
]

# Open a pipeline with its stores (the composition root's, re-exported for embedding applications).
workspace = open_workspace
_lock_json = lock_json


@contextmanager
def _scoped(pipeline_dir: str | os.PathLike[str], member: str | None, *, fleet_ok: bool = False) -> Iterator[Workspace]:
    """The pipeline's workspace, or one fleet member's (``member``); a fleet command needs a member unless
    ``fleet_ok`` (``apply``, ``status`` and ``plan`` then cover every member).
    """
    with workspace(pipeline_dir) as ws:
        if member is not None:
            yield ws.for_member(member)
        elif ws.pipeline.fleet is not None and not fleet_ok:
            names = ", ".join(m.name for m in ws.members())
            raise UsageError(f"pipeline {ws.pipeline.id!r} is a fleet: give --member NAME (members: {names})")
        else:
            yield ws


def _with_member(doc: dict[str, Any], ws: Workspace) -> dict[str, Any]:
    """A member-scoped command's usual document plus ``member`` (SPEC §13)."""
    return doc if ws.pipeline.member is None else {**doc, "member": ws.pipeline.member}


def _details(
    targets: TargetFactory | None, renderer: StringRenderer | None, sql: bool = False
) -> Callable[[Workspace, list[Decision]], Mapping[str, Mapping[str, Any]]]:
    from flamingock_provider.targets.risk import plan_details

    return lambda ws, decisions: plan_details(ws.pipeline, decisions, targets=targets, renderer=renderer, sql=sql)


# -- commands ---------------------------------------------------------------------------------


def validate(pipeline_dir: str | os.PathLike[str], *, member: str | None = None) -> dict[str, Any]:
    """Parse and check a pipeline folder; list stages, units, risks, errors and warnings.

    ``member``: a fleet member's view: risks and target warnings from that member's own connections
    (their types, as validate reads them anyway), and ``member`` in the document. An invalid folder
    is reported as it is (no member can be looked up in it).
    """
    from flamingock_provider.targets.risk import pipeline_risks

    report = validate_pipeline(pipeline_dir)
    stages: list[dict[str, Any]] = []
    risks: list[dict[str, Any]] = []
    warnings = [{"file": i.file, "message": i.message} for i in report.warnings]
    pipeline = report.pipeline
    if pipeline is not None:
        from flamingock_provider.airflow_config import placement_notes
        from flamingock_provider.targets.sql_validate import sql_target_notes

        if member is not None:
            pipeline = member_view(pipeline, member)
        stages = [{"name": s.name, "changes": [u.id for u in s.units]} for s in pipeline.stages]
        assessed = pipeline_risks(pipeline)
        risks = [r.to_json() for r in assessed]
        files = {u.id: u.source_file for u in pipeline.units}
        warnings += [{"file": files[r.unit_id], "message": r.warning} for r in assessed if r.warning]
        warnings += [{"file": i.file, "message": i.message} for i in sql_target_notes(pipeline)]
        warnings += [{"file": i.file, "message": i.message} for i in placement_notes(pipeline)]
    doc = {
        "ok": not report.errors,
        "pipeline": pipeline.id if pipeline else None,
        "errors": [{"file": i.file, "message": i.message} for i in report.errors],
        "warnings": warnings,
        "stages": stages,
        "risks": risks,
    }
    return doc if member is None else {**doc, "member": member}


def status(pipeline_dir: str | os.PathLike[str], *, member: str | None = None) -> dict[str, Any]:
    """Each unit's latest state, next action and risk, and the lock holder (of a fleet: per member).

    Read without the lease: a unit the live holder is applying right now is ``running``, never blocked.
    """
    from flamingock_provider.targets.risk import plan_details

    with _scoped(pipeline_dir, member, fleet_ok=True) as ws:
        if ws.pipeline.fleet is not None and ws.pipeline.member is None:
            return fleet_matrix(ws, _risk_only(_details(None, None)))
        snapshot, holder = ws.observe()
        decisions = ws.engine().plan(snapshot, live_token=holder.token if holder else None)
    details = plan_details(ws.pipeline, decisions, targets=None, renderer=None)
    changes = [
        {**decision_json(ws.pipeline_dir, d, ws.pipeline.member), "risk": details[d.unit.id]["risk"]} for d in decisions
    ]
    return _with_member({"pipeline": ws.pipeline.id, "lock": _lock_json(holder), "changes": changes}, ws)


def _risk_only(
    details_of: Callable[[Workspace, list[Decision]], Mapping[str, Mapping[str, Any]]],
) -> Callable[[Workspace, list[Decision]], Mapping[str, Mapping[str, Any]]]:
    return lambda ws, decisions: {k: {"risk": v["risk"]} for k, v in details_of(ws, decisions).items()}


def plan(
    pipeline_dir: str | os.PathLike[str],
    *,
    sql: bool = False,
    params: Mapping[str, Any] | None = None,
    targets: TargetFactory | None = None,
    member: str | None = None,
) -> dict[str, Any]:
    """What ``apply`` would do now, with each pending unit's risk and impact: no lock taken, nothing changed.

    ``sql``: add ``rendered``, the exact statements or payloads apply would send, rendered with ``params``.
    """
    from flamingock_provider.targets import open_target

    renderer = cli_renderer(new_run("plan", params))
    details_of = _details(targets or open_target, renderer, sql)
    with _scoped(pipeline_dir, member, fleet_ok=True) as ws:
        if ws.pipeline.fleet is not None and ws.pipeline.member is None:
            return fleet_matrix(ws, details_of)
        snapshot, holder = ws.observe()
        decisions = ws.engine().plan(snapshot, live_token=holder.token if holder else None)
    details = details_of(ws, decisions)
    changes = [{**decision_json(ws.pipeline_dir, d, ws.pipeline.member), **details[d.unit.id]} for d in decisions]
    return _with_member({"pipeline": ws.pipeline.id, "lock": _lock_json(holder), "changes": changes}, ws)


def undo_plan(
    pipeline_dir: str | os.PathLike[str],
    to: str | None = None,
    last: int | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    member: str | None = None,
) -> dict[str, Any]:
    """What ``undo`` would roll back, newest first, and the rollbacks it would send: no lock, no change."""
    from flamingock_provider.core import preview
    from flamingock_provider.targets.risk import plan_details

    with _scoped(pipeline_dir, member) as ws:
        snapshot, holder = ws.observe()
        engine = ws.engine()
        live = holder.token if holder else None
        units = engine.undo_targets(to, last, live_token=live, snapshot=snapshot)
        decisions = {d.unit.id: d for d in engine.plan(snapshot, live_token=live)}
    renderer = cli_renderer(new_run("plan", params))
    details = plan_details(ws.pipeline, [decisions[u.id] for u in units], targets=None, renderer=None)
    doc = {
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
    return _with_member(doc, ws)


def apply(
    pipeline_dir: str | os.PathLike[str],
    until: str | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    owner: str | None = None,
    member: str | None = None,
    approve: str | None = None,
) -> dict[str, Any]:
    """Apply pending units under the lease; the result says what was applied, skipped, failed or blocked.

    A fleet without ``member``: every member, in waves (SPEC §13); with it, that member only.
    ``approve``: the approval note of a person saying yes to this run (``approved_by`` is the OS user).
    Without it, a run that would apply a unit needing approval (SPEC §14) raises
    :class:`~flamingock_provider.exceptions.ApprovalRequiredError` (exit 5) before any unit runs.
    """
    approval = _approval(approve)
    with _scoped(pipeline_dir, member, fleet_ok=True) as ws:
        if ws.pipeline.fleet is not None and ws.pipeline.member is None:
            return apply_fleet(ws, until, params=params, approval=approval)
        return _with_member(apply_member(ws, until, params=params, owner=owner, approval=approval), ws)


def _approval(note: str | None) -> Approval | None:
    return None if note is None else Approval(getpass.getuser(), note)


def undo(
    pipeline_dir: str | os.PathLike[str],
    to: str | None = None,
    last: int | None = None,
    *,
    owner: str | None = None,
    member: str | None = None,
    approve: str | None = None,
) -> dict[str, Any]:
    """Roll back applied units after ``to`` (or the last ``last``), newest first, under the lease.

    ``approve`` as for :func:`apply`: an undo that rolls back a unit needing approval refuses without it.
    """
    with _scoped(pipeline_dir, member) as ws:
        snapshot, holder = ws.observe()  # bad arguments fail before waiting for the lease
        ws.engine().undo_targets(to, last, live_token=holder.token if holder else None, snapshot=snapshot)
        ws.check_connections()
        with holding(ws, owner) as lease:
            run = new_run(lease.owner, approval=_approval(approve))
            return _with_member(ws.engine(lease=lease, run=run).undo(to, last).to_json(), ws)


def rehearse(
    pipeline_dir: str | os.PathLike[str],
    scratch: Mapping[str, str] | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    owner: str | None = None,
    member: str | None = None,
) -> dict[str, Any]:
    """Apply, undo and apply again the pending units on the ``scratch`` connections (target name -> conn id).

    ``scratch`` adds to pipeline.yaml's ``rehearsal.scratch``. The real targets, audit store and lease are never written (SPEC §14); ``ok`` is false when a rollback
    did not restore its target or the second apply differs from the first.
    A fleet needs ``member``: the units pending for that member (its real trail) are rehearsed, and no
    scratch connection may be a real connection of any member.
    """
    from flamingock_provider.core.rehearsing import rehearse_pipeline

    run = new_run(owner or cli_owner(), params)
    doc = rehearse_pipeline(pipeline_dir, scratch, member=member, run=run, renderer=cli_renderer(run)).to_json()
    return doc if member is None else {**doc, "member": member}


def history(
    pipeline_dir: str | os.PathLike[str], change: str | None = None, *, member: str | None = None
) -> dict[str, Any]:
    """Audit entries, oldest first."""
    with _scoped(pipeline_dir, member) as ws:
        if change is not None:
            ws.engine().require_unit(change, "history of")
        entries = ws.store.history(ws.pipeline.audit_key, change)
    return _with_member({"pipeline": ws.pipeline.id, "entries": [e.to_dict() for e in entries]}, ws)


def fix(
    pipeline_dir: str | os.PathLike[str],
    change_id: str,
    as_: str,
    accept_checksum: bool = False,
    *,
    owner: str | None = None,
    member: str | None = None,
) -> dict[str, Any]:
    """Resolve a blocked unit by recording it applied or rolled back, under the lease.

    ``as_`` is ``applied`` or ``rolled-back``. A unit the live lease holder is applying right now is
    refused at once: it is running, not stuck.
    """
    if as_ not in FIX_STATES:
        raise UsageError(f"--as must be one of {', '.join(FIX_STATES)}, got {as_!r}")
    with _scoped(pipeline_dir, member) as ws:
        snapshot, holder = ws.observe()
        ws.engine().refuse_running(change_id, snapshot, holder)
        with holding(ws, owner) as lease:
            entry = ws.engine(lease=lease, run=new_run(lease.owner)).fix(change_id, FIX_STATES[as_], accept_checksum)
    doc = {"pipeline": ws.pipeline.id, "change_id": change_id, "state": entry.state.value, "entry": entry.to_dict()}
    return _with_member(doc, ws)


def unlock(pipeline_dir: str | os.PathLike[str], force: bool = False, *, member: str | None = None) -> dict[str, Any]:
    """Clear a stale (expired) lease; with ``force`` also a live one."""
    with _scoped(pipeline_dir, member) as ws:
        live = ws.leases.current(ws.pipeline.audit_key)
        if live is not None and not force:
            raise FlamingockError(
                f"lease of pipeline {ws.pipeline.id!r} is live: held by {live.owner!r} until "
                f"{live.expires_at.isoformat()}; wait for it, or if that run is dead use "
                f"`{unlock_command(ws.pipeline_dir, force=True, member=ws.pipeline.member)}`"
            )
        previous = ws.leases.force_release(ws.pipeline.audit_key)
    doc = {"pipeline": ws.pipeline.id, "released": previous is not None, "previous": _lock_json(previous)}
    return _with_member(doc, ws)
