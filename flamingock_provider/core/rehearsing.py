"""Compose a rollback rehearsal: the pipeline on scratch targets, a throwaway audit store, the same engine.

``rehearse_pipeline`` reads the real audit log (read only, no lease) to find the pending units, then:

1. refuses before anything runs when a ``scratch`` name is no target, when a target a pending unit uses
   has no scratch connection, or when a scratch connection reaches a real target or the real audit
   store (same conn id, or same server and database / file / account: :mod:`targets.identity`; a real
   target connection this environment cannot resolve is compared by conn id only, with a warning); a
   fleet is rehearsed for one member (its own trail and target settings), and every member's
   connections are real targets;
2. builds the pipeline again with only the scratch targets (a real target cannot even be named) and
   an embedded SQLite audit store in a temp folder, whose own lease fences the rehearsal's writes —
   the real pipeline's lease is never taken, so a rehearsal never blocks a production run;
3. records the units the real log has as done as applied (nothing runs for them), and runs
   :func:`core.rehearsal.rehearse` with the engine on the scratch targets.

A unit with no target, or whose target kind has no snapshot function (HTTP), is listed in
``not_rehearsed``; an HTTP unit still runs, on its scratch connection, a unit without a target does not
(it could reach anything). The scratch targets end as the second apply leaves them.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from flamingock_provider.core.audit import RunInfo
from flamingock_provider.core.context import StringRenderer
from flamingock_provider.core.engine import Engine
from flamingock_provider.core.loader import load_pipeline
from flamingock_provider.core.model import (
    APPLIED_STATES,
    Action,
    AuditConfig,
    ChangeUnit,
    LockConfig,
    NextAction,
    Pipeline,
    State,
    TargetConfig,
)
from flamingock_provider.core.paths import embedded_store_path
from flamingock_provider.core.plan import Decision
from flamingock_provider.core.rehearsal import Facts, RehearsalReport, RehearsedUnit, Snapshot, rehearse
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.core.targets import TargetFactory, TargetSession
from flamingock_provider.core.workspace import (
    CONNECTIONS,
    EMBEDDED_STORE,
    TARGETS,
    Workspace,
    holding,
    new_run,
    open_workspace,
)
from flamingock_provider.exceptions import ConfigurationError, RehearsalRefusedError, UnitExecutionError, UsageError

# target kind (TargetSession.kind) -> "module:function(session) -> facts"; a kind not here is not snapshotted.
SNAPSHOTS: dict[str, str] = {
    "sql": "flamingock_provider.targets.snapshot_sql:snapshot_sql",
    "mongo": "flamingock_provider.targets.snapshot_mongo:snapshot_mongo",
    "aws": "flamingock_provider.targets.snapshot_aws:snapshot_aws",
    "kafka": "flamingock_provider.targets.snapshot_kafka:snapshot_kafka",
}
IDENTITY = "flamingock_provider.targets.identity:connection_identity"
log = logging.getLogger("flamingock")
SnapshotFunction = Callable[[TargetSession], Facts]
Watched = tuple[TargetConfig, SnapshotFunction]


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def rehearse_pipeline(
    pipeline_dir: str | os.PathLike[str],
    scratch: Mapping[str, str] | None = None,
    *,
    member: str | None = None,
    pipeline: Pipeline | None = None,
    run: RunInfo | None = None,
    renderer: StringRenderer | None = None,
    targets: TargetFactory | None = None,
) -> RehearsalReport:
    """Rehearse the pending units of a pipeline on the ``scratch`` connections (target name -> conn id).

    ``scratch`` adds to (and overrides, per target) pipeline.yaml's ``rehearsal.scratch``. A fleet is
    rehearsed for one ``member``: the units pending in its own trail, its targets' settings (e.g. a
    MongoDB database name) on the scratch connections; every member's connections count as real.
    """
    pipeline = pipeline if pipeline is not None else load_pipeline(pipeline_dir)
    scratch = {**pipeline.rehearsal_scratch, **(scratch or {})}
    check_scratch_names(pipeline, scratch)
    pipeline, decisions, fleet_targets = _real_decisions(pipeline_dir, pipeline, member)
    pending = [d.unit for d in decisions if d.action is NextAction.APPLY and not d.reconcile]
    check_scratch_complete(pipeline, pending, scratch)
    check_scratch_not_real(pipeline, scratch, fleet_targets)
    remapped = scratch_pipeline(pipeline, scratch)
    factory = targets or cast(TargetFactory, _load(TARGETS))
    with _throwaway_engine(remapped, os.fspath(pipeline_dir), run, renderer, factory) as engine:
        runnable = {u.id: _target_name(remapped, u) for u in pending if remapped.target_of(u) is not None}
        for unit in pipeline.units:  # done in the real log, or impossible to run safely: recorded, not run
            if unit.id not in runnable:
                engine.fix(unit.id, State.MANUAL_MARKED_AS_APPLIED)
        steps = EngineSteps(engine, _watched(remapped, runnable.values(), factory), factory)
        units = [
            RehearsedUnit(uid, engine.executor.can_roll_back(remapped.unit(uid)), target in steps.watched)
            for uid, target in runnable.items()
        ]
        with closing(steps):
            report = rehearse(pipeline.id, units, steps)
    report.not_rehearsed = [u.id for u in pending if u.id not in runnable] + report.not_rehearsed
    return report


def _target_name(pipeline: Pipeline, unit: ChangeUnit) -> str:
    config = pipeline.target_of(unit)
    assert config is not None
    return config.name


def _real_decisions(
    pipeline_dir: str | os.PathLike[str], pipeline: Pipeline, member: str | None
) -> tuple[Pipeline, list[Decision], dict[str, TargetConfig]]:
    """The real pipeline's (or fleet member's) plan, read without its lease, and every member's own targets.

    A blocked or running unit stops the rehearsal; so does a fleet without ``member`` (whose trail?).
    """
    with open_workspace(pipeline_dir, pipeline=pipeline) as ws:
        members = ws.members()
        if member is None and pipeline.fleet is not None:
            raise UsageError(
                f"pipeline {pipeline.id!r} is a fleet: a rehearsal runs one member's pending units; give --member "
                f"NAME (members: {', '.join(m.name for m in members)}); nothing was run"
            )
        if member is not None:
            ws = ws.for_member(member, members)
        snapshot, holder = ws.observe()
        engine = ws.engine(targets=_no_real_target)
        decisions = engine.plan(snapshot, live_token=holder.token if holder else None)
    stuck = [d for d in decisions if d.action in (NextAction.BLOCKED, NextAction.RUNNING)]
    if stuck:
        listed = "; ".join(f"{d.unit.id}: {d.action.value} ({d.reason})" for d in stuck)
        raise RehearsalRefusedError(
            f"pipeline {pipeline.id!r}: a rehearsal runs what apply would run, and apply cannot go past {listed}; "
            f"resolve it (see `flamingock status`), then rehearse again; nothing was run"
        )
    fleet_targets = {f"target {t.name!r} of member {m.name!r}": t for m in members for t in m.targets.values()}
    if members:  # the pipeline.yaml targets, which a member that maps no connection of its own uses
        fleet_targets.update({f"target {t.name!r} of pipeline.yaml": t for t in pipeline.targets.values()})
    return ws.pipeline, decisions, fleet_targets


def _no_real_target(config: TargetConfig) -> TargetSession:
    raise RehearsalRefusedError(
        f"target {config.name!r}: a change on it was interrupted while STARTED and only the real target can "
        f"tell whether it committed; a rehearsal never opens a real target: run `flamingock status` and "
        f"resolve it (or apply), then rehearse again; nothing was run"
    )


def check_scratch_names(pipeline: Pipeline, scratch: Mapping[str, str]) -> None:
    """Refuse a scratch mapping that names a target the pipeline does not have."""
    for name in scratch:
        if name not in pipeline.targets:
            hint = (
                did_you_mean(name, list(pipeline.targets)) or f"; its targets: {', '.join(pipeline.targets) or 'none'}"
            )
            raise RehearsalRefusedError(
                f"scratch target {name!r}: pipeline {pipeline.id!r} has no such target{hint}; nothing was run"
            )


def check_scratch_complete(pipeline: Pipeline, pending: Sequence[ChangeUnit], scratch: Mapping[str, str]) -> None:
    """Refuse when a target that a pending unit uses has no scratch connection (listing every one missing)."""
    missing: dict[str, list[str]] = {}
    for unit in pending:
        config = pipeline.target_of(unit)
        if config is not None and config.name not in scratch:
            missing.setdefault(config.name, []).append(unit.id)
    if missing:
        listed = "; ".join(f"{name} (used by {', '.join(ids)})" for name, ids in missing.items())
        raise RehearsalRefusedError(
            f"pipeline {pipeline.id!r}: no scratch connection for target(s) {listed}; map each one to a scratch "
            f"connection (TARGET=SCRATCH_CONN_ID, or rehearsal.scratch in pipeline.yaml); nothing was run"
        )


def check_scratch_not_real(
    pipeline: Pipeline, scratch: Mapping[str, str], others: Mapping[str, TargetConfig] | None = None
) -> None:
    """Refuse a scratch connection that is, or reaches the same system as, a real target or the audit store.

    ``others``: more real targets by what to call them (a fleet's members' own connections).
    """
    get_connection, identity = _load(CONNECTIONS), _load(IDENTITY)
    real: dict[Any, str] = {}
    named = {**(others or {}), **{f"target {c.name!r}": c for c in pipeline.targets.values()}}
    for what, config in named.items():
        real[config.conn_id] = what
        try:
            conn = get_connection(config.conn_id)
        except ConfigurationError as err:  # e.g. a CI box with scratch connections only: nothing here reaches it
            log.warning("rehearsal: %s: %s; compared by conn id only", what, err)
            continue
        real[identity(conn, config.database)] = what
    audit = pipeline.audit
    if audit.conn_id is not None:
        real[audit.conn_id] = "the audit store"
        real[identity(get_connection(audit.conn_id), audit.database)] = "the audit store"
    else:
        real[("sqlite", os.path.realpath(embedded_store_path()))] = "the embedded audit store"
    for name, conn_id in scratch.items():
        config = _scratch_target(pipeline.targets[name], conn_id)
        for key in (conn_id, identity(get_connection(conn_id), config.database)):
            if key in real:
                how = "is the connection of" if key == conn_id else f"reaches {_system(key)}, as does"
                raise RehearsalRefusedError(
                    f"scratch target {name}={conn_id}: {conn_id!r} {how} {real[key]}; a rehearsal must run on a "
                    f"separate scratch system: give the connection of a throwaway copy; nothing was run"
                )


def _system(identity: Sequence[str]) -> str:
    return " ".join(part for part in identity if part)


def scratch_pipeline(pipeline: Pipeline, scratch: Mapping[str, str]) -> Pipeline:
    """The pipeline with only its scratch targets, the embedded audit store and a lease kept there."""
    targets = {name: _scratch_target(pipeline.targets[name], conn_id) for name, conn_id in scratch.items()}
    lock = LockConfig(lease_seconds=pipeline.lock.lease_seconds, wait_timeout_seconds=0, poke_interval_seconds=0.1)
    return replace(pipeline, targets=targets, audit=AuditConfig(), lock=lock)


def _scratch_target(config: TargetConfig, conn_id: str) -> TargetConfig:
    """``config`` on ``conn_id``; a scratch connection that names its own database (schema) uses that one."""
    conn = _load(CONNECTIONS)(conn_id)
    return replace(config, conn_id=conn_id, database=None if conn.schema else config.database)


@contextmanager
def _throwaway_engine(
    pipeline: Pipeline, pipeline_dir: str, run: RunInfo | None, renderer: StringRenderer | None, factory: TargetFactory
) -> Iterator[Engine]:
    """The engine of ``pipeline`` over an embedded audit store in a temp folder, under that store's lease."""
    with tempfile.TemporaryDirectory(prefix="flamingock-rehearsal-") as folder:
        store = _load(EMBEDDED_STORE)(AuditConfig(), Path(folder) / "audit.db")
        try:
            ws = Workspace(pipeline, pipeline_dir, store, store)
            with holding(ws, run.owner if run else None) as lease:
                yield ws.engine(lease=lease, run=run or new_run(lease.owner), targets=factory, renderer=renderer)
        finally:
            store.close()


def _watched(pipeline: Pipeline, names: Iterable[str], factory: TargetFactory) -> dict[str, Watched]:
    """The scratch targets ``names`` that can be snapshotted, with their snapshot function."""
    watched: dict[str, Watched] = {}
    for name in dict.fromkeys(names):
        config = pipeline.targets[name]
        session = factory(config)
        try:
            spec = SNAPSHOTS.get(session.kind)
        finally:
            session.close()
        if spec is not None:
            watched[name] = (config, _load(spec))
    return watched


class EngineSteps:
    """The rehearsal's steps on the engine: apply up to a unit, undo one unit, mark one, snapshot.

    Snapshots read through one session per watched target, kept for the whole rehearsal (a boto3
    client costs ~0.1-1 s to build); :meth:`close` closes them.
    """

    def __init__(self, engine: Engine, watched: Mapping[str, Watched], factory: TargetFactory) -> None:
        self.engine = engine
        self.watched = dict(watched)
        self.factory = factory
        self._sessions: dict[str, TargetSession] = {}

    def snapshot(self) -> Snapshot:
        facts: dict[str, Facts] = {}
        for name, (config, function) in self.watched.items():
            if name not in self._sessions:
                self._sessions[name] = self.factory(config)
            facts[name] = function(self._sessions[name])
        return facts

    def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            session.close()

    def apply(self, unit_id: str) -> str | None:
        result = self.engine.apply(until=unit_id)
        if result.failed:
            return str(result.failed["error"])
        return str(result.blocked["reason"]) if result.blocked else None

    def undo(self, unit_id: str) -> str | None:
        latest = self.engine.snapshot().get(unit_id)
        if latest is None or latest.state not in APPLIED_STATES:
            return None  # not applied by the first apply (e.g. its `when:` was false): nothing to undo
        try:
            self.engine.executor.rollback(self.engine.pipeline.unit(unit_id), latest, Action.UNDO)
        except UnitExecutionError as err:
            return str(err.cause)
        return None

    def mark(self, unit_id: str, applied: bool) -> None:
        self.engine.fix(unit_id, State.MANUAL_MARKED_AS_APPLIED if applied else State.MANUAL_MARKED_AS_ROLLED_BACK)
