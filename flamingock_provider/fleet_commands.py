"""Fleet commands (SPEC §13): ``apply`` in waves, ``status``/``plan`` as a member-by-change matrix.

A fleet apply runs in one process: each wave's members on up to ``max_parallel`` threads, each member
under its own lease ``<pipeline>@<member>`` with its own targets and audit trail, sharing the one open
audit store. A member that fails (a unit, a missing connection, its lease not acquired) never stops
the members running beside it; ``on_error: halt`` only keeps later waves from starting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flamingock_provider.commandline import decision_json
from flamingock_provider.core.approval import Approval
from flamingock_provider.core.fleet import split_waves
from flamingock_provider.core.model import LeaseInfo, Member, OnError
from flamingock_provider.core.plan import Decision
from flamingock_provider.core.workspace import Workspace, holding, new_run
from flamingock_provider.exceptions import ApprovalRequiredError, FlamingockError

log = logging.getLogger("flamingock")


def lock_json(info: LeaseInfo | None) -> dict[str, Any] | None:
    """SPEC §11's ``lock``: null, or the live holder."""
    if info is None:
        return None
    return {"owner": info.owner, "token": info.token, "expires_at": info.expires_at.isoformat()}


def apply_member(
    ws: Workspace,
    until: str | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    owner: str | None = None,
    approval: Approval | None = None,
) -> dict[str, Any]:
    """Apply one member's pending units under its own lease (``ws`` is the member's workspace)."""
    ws.check_connections()
    with holding(ws, owner) as lease:
        run = new_run(lease.owner, params, approval)
        return ws.engine(lease=lease, run=run).apply(until).to_json()


def member_outcome(ws: Workspace, member: Member, run: Callable[[Workspace], dict[str, Any]]) -> dict[str, Any]:
    """One member's row of a fleet apply; an error that stops the member before its units is its ``failed``."""
    scoped = ws.for_member(member)
    try:
        doc = run(scoped)
    except ApprovalRequiredError:  # the whole fleet apply needs a person's yes (exit 5), not one member
        raise
    except FlamingockError as err:
        log.error("member %s failed: %s", member.name, err)
        doc = {"applied": [], "skipped": [], "failed": {"id": None, "error": str(err)}, "blocked": None}
    return {"member": member.name, **{k: v for k, v in doc.items() if k != "pipeline"}}


def apply_fleet(
    ws: Workspace,
    until: str | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    members: Sequence[Member] | None = None,
    approval: Approval | None = None,
) -> dict[str, Any]:
    """Apply every member, wave after wave, ``max_parallel`` at once; ``halt`` stops after a failing wave."""
    fleet = ws.pipeline.fleet
    assert fleet is not None
    everyone = tuple(members if members is not None else ws.members())
    rows: list[dict[str, Any]] = []
    halted: int | None = None
    waves = split_waves(everyone, fleet.waves)
    with ThreadPoolExecutor(max_workers=fleet.max_parallel, thread_name_prefix="flamingock-member") as pool:
        for number, wave in enumerate(waves, start=1):
            done = list(
                pool.map(
                    lambda m: member_outcome(ws, m, lambda s: apply_member(s, until, params=params, approval=approval)),
                    wave,
                )
            )
            rows += done
            if fleet.on_error is OnError.HALT and any(r["failed"] or r["blocked"] for r in done):
                halted = number
                break
    ran = {r["member"] for r in rows}
    return {
        "pipeline": ws.pipeline.id,
        "members": rows,
        "halted_after_wave": halted,
        "not_started": [m.name for m in everyone if m.name not in ran],
        "waves": [[m.name for m in wave] for wave in waves],
    }


def observe_matrix(
    ws: Workspace, members: Sequence[Member]
) -> list[tuple[Workspace, list[Decision], LeaseInfo | None]]:
    """Every member's decisions from ONE fleet read of the audit store, and its live holder."""
    snapshots, holders = ws.observe_fleet(members)
    out = []
    for member in members:
        scoped = ws.for_member(member)
        holder = holders.get(member.name)
        decisions = scoped.engine().plan(snapshots[member.name], live_token=holder.token if holder else None)
        out.append((scoped, decisions, holder))
    return out


def fleet_matrix(
    ws: Workspace,
    details_of: Callable[[Workspace, list[Decision]], Mapping[str, Mapping[str, Any]]],
    members: Sequence[Member] | None = None,
) -> dict[str, Any]:
    """SPEC §13's ``status``/``plan`` document: per member its lock and each change's state, next action and
    the ``details_of`` that member's decisions (risk; for ``plan`` the impact on the member's own targets).
    """
    rows = []
    for scoped, decisions, holder in observe_matrix(ws, members if members is not None else ws.members()):
        details = details_of(scoped, decisions)
        member = scoped.pipeline.member
        changes = [{**decision_json(ws.pipeline_dir, d, member), **details[d.unit.id]} for d in decisions]
        rows.append({"member": member, "lock": lock_json(holder), "changes": changes})
    return {"pipeline": ws.pipeline.id, "members": rows}
