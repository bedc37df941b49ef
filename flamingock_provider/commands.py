"""The ``flamingock`` commands as plain functions returning the SPEC §11 JSON documents.

Embed the runner in an application or a service without Airflow::

    from flamingock_provider import commands
    result = commands.apply("dags/changes/warehouse")

Errors are :class:`~flamingock_provider.exceptions.FlamingockError` subclasses whose ``exit_code``
the CLI uses; ``apply``/``undo`` report a failed or blocked unit in the result instead of raising.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flamingock_provider.core.context import StringRenderer, sandboxed_renderer
from flamingock_provider.core.engine import Engine
from flamingock_provider.core.executor import RunInfo, UnitExecutor
from flamingock_provider.core.lease import Lease, LeaseBackend, cli_owner
from flamingock_provider.core.loader import load_pipeline, validate_pipeline
from flamingock_provider.core.model import LeaseInfo, Pipeline
from flamingock_provider.core.sinks import configured_sinks
from flamingock_provider.core.targets import TargetFactory
from flamingock_provider.exceptions import FlamingockError, LeaseLostError

log = logging.getLogger("flamingock")


@dataclass
class Workspace:
    """A loaded pipeline with its audit store and lease backend, closed together."""

    pipeline: Pipeline
    pipeline_dir: str
    store: Any
    leases: LeaseBackend

    def engine(
        self,
        *,
        lease: Lease | None = None,
        run: RunInfo | None = None,
        targets: TargetFactory | None = None,
        renderer: StringRenderer | None = None,
    ) -> Engine:
        run = run or new_run(lease.owner if lease else "cli")
        if targets is None:
            from flamingock_provider.targets import open_target

            targets = open_target
        renderer = renderer or sandboxed_renderer(_cli_variables(run))
        executor = UnitExecutor(
            self.pipeline, self.store, targets, run, lease=lease, renderer=renderer, log=log, sinks=configured_sinks()
        )
        return Engine(executor, pipeline_dir=self.pipeline_dir)

    def lease(self, owner: str | None = None) -> Lease:
        return Lease(self.leases, self.pipeline.id, owner or cli_owner(), self.pipeline.lock)


def new_run(owner: str, params: Mapping[str, Any] | None = None) -> RunInfo:
    return RunInfo(
        execution_id=uuid.uuid4().hex,
        owner=owner,
        triggered_by="cli",
        hostname=socket.gethostname(),
        params=dict(params or {}),
    )


def _cli_variables(run: RunInfo) -> dict[str, Any]:
    today = datetime.now(timezone.utc)
    return {"params": dict(run.params), "run_id": run.execution_id, "ds": today.date().isoformat(), "env": {}}


@contextmanager
def workspace(pipeline_dir: str | os.PathLike[str]) -> Iterator[Workspace]:
    """Load and validate the pipeline, then open its stores (closed on exit)."""
    from flamingock_provider.stores import open_lease_backend, open_store

    pipeline = load_pipeline(pipeline_dir)
    store = open_store(pipeline.audit)
    try:
        leases = open_lease_backend(pipeline.lock, store)
        yield Workspace(pipeline, str(pipeline_dir), store, leases)
    finally:
        store.close()


@contextmanager
def holding(ws: Workspace, owner: str | None = None) -> Iterator[Lease]:
    """Acquire the pipeline's lease (waiting per ``lock:``) and release it unless it was lost."""
    lease = ws.lease(owner)
    lease.acquire()
    try:
        with lease.heartbeat():
            yield lease
    except BaseException as err:
        if isinstance(err, LeaseLostError):
            lease.token = None  # a runner that lost its lease releases nothing
        _release_after(lease, err)
        raise
    lease.release()


def _release_after(lease: Lease, err: BaseException) -> None:
    """Release after a failure; if that fails too (the store is down), report the first failure, not this one."""
    try:
        lease.release()
    except FlamingockError as release_err:
        log.warning("could not release the lease after %s: %s; it expires by itself", type(err).__name__, release_err)


def _lock_json(info: LeaseInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"owner": info.owner, "token": info.token, "expires_at": info.expires_at.isoformat()}


# -- commands ---------------------------------------------------------------------------------


def validate(pipeline_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and check a pipeline folder; list stages, units, errors and warnings."""
    report = validate_pipeline(pipeline_dir)
    stages = []
    if report.pipeline is not None:
        from flamingock_provider.targets.sql_validate import sql_target_notes

        stages = [{"name": s.name, "changes": [u.id for u in s.units]} for s in report.pipeline.stages]
        report.warnings.extend(sql_target_notes(report.pipeline))
    return {
        "ok": not report.errors,
        "pipeline": report.pipeline.id if report.pipeline else None,
        "errors": [{"file": i.file, "message": i.message} for i in report.errors],
        "warnings": [{"file": i.file, "message": i.message} for i in report.warnings],
        "stages": stages,
    }


def status(pipeline_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Each unit's latest state and next action, and the lock holder."""
    with workspace(pipeline_dir) as ws:
        decisions = ws.engine().plan()
        holder = ws.leases.current(ws.pipeline.id)
    return {
        "pipeline": ws.pipeline.id,
        "lock": _lock_json(holder),
        "changes": [d.to_json() for d in decisions],
    }


def plan(pipeline_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``apply`` would do now: no lock taken, nothing changed."""
    return status(pipeline_dir)


def apply(
    pipeline_dir: str | os.PathLike[str],
    until: str | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """Apply pending units under the lease; the result says what was applied, skipped, failed or blocked."""
    with workspace(pipeline_dir) as ws, holding(ws, owner) as lease:
        run = new_run(lease.owner, params)
        return ws.engine(lease=lease, run=run).apply(until).to_json()


def undo(
    pipeline_dir: str | os.PathLike[str],
    to: str | None = None,
    last: int | None = None,
    *,
    owner: str | None = None,
) -> dict[str, Any]:
    """Roll back applied units after ``to`` (or the last ``last``), newest first, under the lease."""
    with workspace(pipeline_dir) as ws:
        ws.engine().undo_targets(to, last)  # bad arguments fail before waiting for the lease
        with holding(ws, owner) as lease:
            return ws.engine(lease=lease, run=new_run(lease.owner)).undo(to, last).to_json()


def history(pipeline_dir: str | os.PathLike[str], change: str | None = None) -> dict[str, Any]:
    """Audit entries, oldest first."""
    with workspace(pipeline_dir) as ws:
        if change is not None:
            ws.engine()._require_unit(change, "--change")
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
    """Resolve a blocked unit by recording it applied or rolled back, under the lease."""
    with workspace(pipeline_dir) as ws, holding(ws, owner) as lease:
        entry = ws.engine(lease=lease, run=new_run(lease.owner)).fix(change_id, as_, accept_checksum)
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
                f"{live.expires_at.isoformat()}; wait for it, or if that run is dead use `flamingock unlock "
                f"{pipeline_dir} --force`"
            )
        previous = ws.leases.force_release(ws.pipeline.id)
    return {"pipeline": ws.pipeline.id, "released": previous is not None, "previous": _lock_json(previous)}
