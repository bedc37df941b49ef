"""The composition root: a pipeline opened with its audit store, lease backend and targets.

The CLI commands (:mod:`flamingock_provider.commands`) and the Airflow hook open pipelines only here,
so a run is wired the same way whoever starts it. Backends are named by dotted path and imported on
first use: the core itself imports no driver and no Airflow.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, cast

from flamingock_provider.core.approval import Approval
from flamingock_provider.core.audit import AuditStore, RunInfo
from flamingock_provider.core.checks import CheckEvaluator
from flamingock_provider.core.context import StringRenderer, sandboxed_renderer
from flamingock_provider.core.engine import Engine
from flamingock_provider.core.executor import UnitExecutor
from flamingock_provider.core.fleet import find_member, member_pipeline, members_from_json
from flamingock_provider.core.lease import Lease, LeaseBackend, cli_owner
from flamingock_provider.core.loader import load_pipeline
from flamingock_provider.core.model import (
    AuditConfig,
    AuditEntry,
    ChangeUnit,
    LeaseInfo,
    LockConfig,
    Member,
    Pipeline,
    audit_key,
)
from flamingock_provider.core.paths import embedded_store_path
from flamingock_provider.core.sinks import configured_sinks
from flamingock_provider.core.targets import TargetFactory
from flamingock_provider.exceptions import ConfigurationError, FlamingockError, LeaseLostError, UsageError

log = logging.getLogger("flamingock")

# audit connection type -> "module:factory(config, connection) -> store"; a new store adds one line.
STORE_FACTORIES: dict[str, str] = {
    "sqlite": "flamingock_provider.stores.sqlite:open_sqlite_store",
    "mongo": "flamingock_provider.stores.mongo:open_mongo_store",
    "aws": "flamingock_provider.stores.dynamodb:open_dynamodb_store",
    "postgres": "flamingock_provider.stores.sql:open_sql_store",
    "mysql": "flamingock_provider.stores.sql:open_sql_store",
}
# lock connection type (other than redis) -> "module:factory(lock config, connection) -> lease backend"
SQL_LEASE = "flamingock_provider.stores.sql:open_sql_lease"
SQL_LEASE_TYPES = ("postgres", "mysql")
EMBEDDED_STORE = "flamingock_provider.stores.sqlite:open_embedded_store"
REDIS_LEASE = "flamingock_provider.stores.redis_lease:open_redis_lease"
TARGETS = "flamingock_provider.targets:open_target"
CHECKS = "flamingock_provider.targets.checks"  # evaluates checks: per target (module with evaluate/cancel)
UNIT_RISK = "flamingock_provider.targets.risk:unit_risk"
CONNECTIONS = "flamingock_provider.targets.connections:get_connection"
VARIABLES = "flamingock_provider.targets.connections:get_variable"


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def open_store(config: AuditConfig) -> AuditStore:
    """Open the audit store a pipeline's ``audit:`` names (the embedded SQLite file by default)."""
    if config.conn_id is None:
        return cast(AuditStore, _load(EMBEDDED_STORE)(config, embedded_store_path()))
    conn = _load(CONNECTIONS)(config.conn_id)
    spec = STORE_FACTORIES.get(conn.conn_type or "")
    if spec is None:
        raise ConfigurationError(
            f"audit connection {config.conn_id!r} has type {conn.conn_type!r}; the audit store must be a "
            f"{', '.join(sorted(STORE_FACTORIES))} connection"
        )
    return cast(AuditStore, _load(spec)(config, conn))


def open_lease_backend(config: LockConfig, store: AuditStore) -> LeaseBackend:
    """Return the lease backend: Redis when ``lock.conn_id`` is set, else the audit store itself."""
    if config.conn_id is not None:
        if config.conn_id == getattr(store, "conn_id", None) and hasattr(store, "acquire"):
            return cast(LeaseBackend, store)  # the audit store's own connection: one store, fenced appends
        conn = _load(CONNECTIONS)(config.conn_id)
        if conn.conn_type == "redis":
            return cast(LeaseBackend, _load(REDIS_LEASE)(config.conn_id))
        if conn.conn_type in SQL_LEASE_TYPES:
            return cast(LeaseBackend, _load(SQL_LEASE)(config, conn))
        raise ConfigurationError(
            f"pipeline.yaml: field 'lock.conn_id': connection {config.conn_id!r} has type {conn.conn_type!r}; the "
            f"lease can live in a redis, postgres or mysql connection (or remove lock.conn_id to keep it in the "
            f"audit store)"
        )
    if not hasattr(store, "acquire"):
        raise ConfigurationError(f"audit store {type(store).__name__} keeps no lease; set lock.conn_id to redis")
    return cast(LeaseBackend, store)


def new_run(owner: str, params: Mapping[str, Any] | None = None, approval: Approval | None = None) -> RunInfo:
    """Return the identity of a run started outside Airflow (the CLI, an embedding application)."""
    return RunInfo(
        execution_id=uuid.uuid4().hex,
        owner=owner,
        triggered_by="cli",
        hostname=socket.gethostname(),
        params=dict(params or {}),
        approved_by=approval.by if approval else None,
        approval_note=approval.note if approval else None,
    )


def cli_renderer(run: RunInfo) -> StringRenderer:
    """The sandboxed Jinja renderer of a run outside Airflow (``params``, ``run_id``, ``ds``)."""
    return sandboxed_renderer(_cli_variables(run))


def _cli_variables(run: RunInfo) -> dict[str, Any]:
    today = datetime.now(timezone.utc)
    return {"params": dict(run.params), "run_id": run.execution_id, "ds": today.date().isoformat(), "env": {}}


def fleet_members(pipeline: Pipeline) -> tuple[Member, ...]:
    """A fleet's members: inline, or read now from its Airflow Variable (``()`` outside a fleet)."""
    fleet = pipeline.fleet
    if fleet is None:
        return ()
    if fleet.members is not None:
        return fleet.members
    assert fleet.variable is not None
    return members_from_json(_load(VARIABLES)(fleet.variable), fleet.variable, pipeline.targets)


def member_view(pipeline: Pipeline, member: Member | str, members: Sequence[Member] | None = None) -> Pipeline:
    """The pipeline as the fleet member ``member`` (a name: looked up in ``members``, else the fleet's) sees it."""
    if isinstance(member, str):
        if pipeline.fleet is None:
            raise UsageError(
                f"--member {member!r}: pipeline {pipeline.id!r} has no 'fleet:' in pipeline.yaml; drop --member"
            )
        member = find_member(fleet_members(pipeline) if members is None else members, member)
    return member_pipeline(pipeline, member)


@dataclass
class Workspace:
    """A loaded pipeline with its audit store and lease backend, closed together."""

    pipeline: Pipeline
    pipeline_dir: str
    store: AuditStore
    leases: LeaseBackend

    def engine(
        self,
        *,
        lease: Lease | None = None,
        run: RunInfo | None = None,
        targets: TargetFactory | None = None,
        renderer: StringRenderer | None = None,
        risks: Mapping[str, str] | None = None,
    ) -> Engine:
        """Return the engine for one run: ``lease`` held by the caller (None to only read).

        ``risks``: units' risk levels already analysed (by the plan task), recorded as they are.
        """
        run = run or new_run(lease.owner if lease else "cli")
        executor = UnitExecutor(
            self.pipeline,
            self.store,
            targets or cast(TargetFactory, _load(TARGETS)),
            run,
            lease=lease,
            renderer=renderer or sandboxed_renderer(_cli_variables(run)),
            log=log,
            sinks=configured_sinks(),
            checks=cast(CheckEvaluator, importlib.import_module(CHECKS)),
            risk_of=self._risk_of if not risks else lambda unit: risks.get(unit.id) or self._risk_of(unit),
        )
        return Engine(executor, pipeline_dir=self.pipeline_dir)

    def _risk_of(self, unit: ChangeUnit) -> str | None:
        """The unit's risk level, as its audit entries record it."""
        return str(_load(UNIT_RISK)(self.pipeline, unit).level.value)

    def lease(self, owner: str | None = None) -> Lease:
        """Return an unacquired lease of this pipeline for ``owner`` (a fresh CLI owner by default)."""
        return Lease(self.leases, self.pipeline.audit_key, owner or cli_owner(), self.pipeline.lock)

    def holder(self) -> LeaseInfo | None:
        """Return the live lease holder, or None."""
        return self.leases.current(self.pipeline.audit_key)

    def observe(self) -> tuple[Mapping[str, AuditEntry], LeaseInfo | None]:
        """Read the audit state, THEN the live holder: what status and plan decide from without the lease.

        The order matters (verification/protocol.pml, property P5): read the other way round, a runner
        that takes the lease in between and writes STARTED would show its running unit as blocked.
        """
        snapshot = self.store.latest(self.pipeline.audit_key)
        return snapshot, self.holder()

    # -- fleets (SPEC §13) ----------------------------------------------------------------------

    def members(self) -> tuple[Member, ...]:
        """The fleet's members: inline, or read now from the Airflow Variable (``()`` outside a fleet)."""
        return fleet_members(self.pipeline)

    def for_member(self, member: Member | str, members: Sequence[Member] | None = None) -> Workspace:
        """This workspace as one member sees it: its targets, audit trail ``<pipeline>@<member>``, its lease."""
        return replace(self, pipeline=member_view(self.pipeline, member, members))

    def check_connections(self) -> None:
        """Fail naming the member and the target when one of a member's own connections is not defined."""
        member = self.pipeline.member
        if member is None:
            return
        for name, target in self.pipeline.targets.items():
            try:
                _load(CONNECTIONS)(target.conn_id)
            except ConfigurationError as err:
                raise ConfigurationError(
                    f"member {member!r}: target {name!r}: connection {target.conn_id!r} is not defined; create it "
                    f"(e.g. AIRFLOW_CONN_{target.conn_id.upper()}) or correct the member's targets"
                ) from err

    def observe_fleet(
        self, members: Sequence[Member]
    ) -> tuple[Mapping[str, Mapping[str, AuditEntry]], Mapping[str, LeaseInfo]]:
        """Every member's audit state in one store read, THEN their live holders (the order of :meth:`observe`)."""
        names = [m.name for m in members]
        snapshots = self.store.latest_members(self.pipeline.id, names)
        keys = {audit_key(self.pipeline.id, name): name for name in names}
        many = getattr(self.leases, "current_many", None)
        if many is not None:
            held = many(list(keys))
        else:  # a backend without a batch read (Redis): one read per member
            held = {key: info for key in keys if (info := self.leases.current(key)) is not None}
        return snapshots, {keys[key]: info for key, info in held.items()}


@contextmanager
def open_workspace(pipeline_dir: str | os.PathLike[str], *, pipeline: Pipeline | None = None) -> Iterator[Workspace]:
    """Load and validate the pipeline (unless given, e.g. from the parse cache), then open its stores."""
    pipeline = pipeline if pipeline is not None else load_pipeline(pipeline_dir)
    store = open_store(pipeline.audit)
    try:
        leases = open_lease_backend(pipeline.lock, store)
        yield Workspace(pipeline, os.fspath(pipeline_dir), store, leases)
    finally:
        store.close()


@contextmanager
def holding(ws: Workspace, owner: str | None = None) -> Iterator[Lease]:
    """Acquire the pipeline's lease (waiting per ``lock:``), beat while the block runs, release after.

    A runner that lost its lease releases nothing; a failed release after a failure is logged, and the
    first failure is the one raised.
    """
    lease = ws.lease(owner)
    lease.acquire()
    try:
        with lease.heartbeat():
            yield lease
    except BaseException as err:
        if isinstance(err, LeaseLostError):
            lease.token = None
        _release_after(lease, err)
        raise
    lease.release()


def _release_after(lease: Lease, err: BaseException) -> None:
    try:
        lease.release()
    except FlamingockError as release_err:
        log.warning("could not release the lease after %s: %s; it expires by itself", type(err).__name__, release_err)
