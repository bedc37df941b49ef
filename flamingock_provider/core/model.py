"""Domain model: pipelines, stages, change units, audit entries, leases. Frozen and I/O free."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any


class State(str, enum.Enum):
    STARTED = "STARTED"
    APPLIED = "APPLIED"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"
    MANUAL_MARKED_AS_APPLIED = "MANUAL_MARKED_AS_APPLIED"
    MANUAL_MARKED_AS_ROLLED_BACK = "MANUAL_MARKED_AS_ROLLED_BACK"
    CHECK_FAILED = "CHECK_FAILED"  # a precondition said no; nothing was executed (SPEC §14)


class Action(str, enum.Enum):
    APPLY = "apply"
    ROLLBACK = "rollback"
    UNDO = "undo"
    FIX = "fix"


class TxStrategy(str, enum.Enum):
    NON_TX = "NON_TX"
    TX_SHARED = "TX_SHARED"
    TX_SEPARATE = "TX_SEPARATE"


class Recovery(str, enum.Enum):
    MANUAL_INTERVENTION = "manual_intervention"
    ALWAYS_RETRY = "always_retry"


class OnFailure(str, enum.Enum):
    ROLLBACK_FAILED = "rollback_failed"
    ROLLBACK_STAGE = "rollback_stage"
    ROLLBACK_RUN = "rollback_run"


class RunMode(str, enum.Enum):
    TASK_PER_UNIT = "task_per_unit"
    TASK_PER_STAGE = "task_per_stage"


class ApprovalRequired(str, enum.Enum):
    """When a run needs a person's yes before it applies or undoes a unit (SPEC §14)."""

    NEVER = "never"
    DESTRUCTIVE = "destructive"  # a unit whose risk is destructive or unknown
    ALWAYS = "always"


class LockMode(str, enum.Enum):
    RESCHEDULE = "reschedule"
    DEFERRABLE = "deferrable"
    POKE = "poke"


class OnCheckFail(str, enum.Enum):
    """What a failed precondition does (SPEC §14)."""

    HALT = "halt"
    SKIP = "skip"
    MARK_APPLIED = "mark_applied"
    WARN = "warn"


class NextAction(str, enum.Enum):
    APPLY = "apply"
    SKIP = "skip"
    BLOCKED = "blocked"
    RUNNING = "running"  # STARTED by the execution that holds the live lease right now


class UnitKind(str, enum.Enum):
    TEMPLATE = "template"
    PYTHON = "python"


class RunKind(str, enum.Enum):
    """What a run does to its units: apply them, or roll them back (undo)."""

    APPLY = "apply"
    UNDO = "undo"


APPLIED_STATES = frozenset({State.APPLIED, State.MANUAL_MARKED_AS_APPLIED})
ROLLED_BACK_STATES = frozenset({State.ROLLED_BACK, State.MANUAL_MARKED_AS_ROLLED_BACK})
# Latest states after which a run applies the unit again (SPEC §7); CHECK_FAILED runs its checks again.
REAPPLY_STATES = ROLLED_BACK_STATES | {State.CHECK_FAILED}


@dataclass(frozen=True)
class TargetConfig:
    """A named target system: an Airflow connection plus backend options (e.g. a MongoDB database)."""

    name: str
    conn_id: str
    database: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditConfig:
    """Where the audit log (and, by default, the lease) lives. ``conn_id=None`` is the embedded store."""

    conn_id: str | None = None
    database: str | None = None
    schema: str | None = None  # PostgreSQL: the schema of the audit tables (default: the search_path)
    table: str = "flamingock_audit_log"
    lock_table: str = "flamingock_lock"


@dataclass(frozen=True)
class LockConfig:
    conn_id: str | None = None
    lease_seconds: float = 300
    wait_timeout_seconds: float = 1800
    poke_interval_seconds: float = 15
    mode: LockMode = LockMode.RESCHEDULE


class OnError(str, enum.Enum):
    """What a fleet does once a member failed (SPEC §13)."""

    HALT = "halt"  # no later wave starts
    CONTINUE = "continue"  # every wave runs; the run still fails


REST = "rest"  # the wave entry taking every member not yet taken (always the last entry)


@dataclass(frozen=True)
class Member:
    """One member of a fleet: its name and the pipeline targets it maps to its own connections."""

    name: str
    targets: Mapping[str, TargetConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class FleetConfig:
    """``fleet:`` of pipeline.yaml. ``members`` inline, or ``variable`` names the Airflow Variable holding them.

    ``waves`` are the declared entries (an int, ``"25%"``, or ``rest``), always ending with ``rest``.
    """

    members: tuple[Member, ...] | None = None
    variable: str | None = None
    waves: tuple[int | str, ...] = (REST,)
    max_parallel: int = 1
    on_error: OnError = OnError.HALT


@dataclass(frozen=True)
class ApprovalConfig:
    """``approval:`` of pipeline.yaml: which runs wait for a person, and how long (hours, fractions allowed)."""

    required: ApprovalRequired = ApprovalRequired.NEVER
    timeout_hours: float = 24


@dataclass(frozen=True)
class Step:
    """One apply/rollback pair of a template unit. ``rollback=None`` means "derive it or none"."""

    apply: Mapping[str, Any]
    rollback: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CheckSpec:
    """One precondition of a unit: ``kind`` (sql, mongo, dynamodb, s3, http) and its fields.

    ``label`` names it in messages and audit entries (``checks[0] sql``); ``target`` is the target it
    runs on (None: the unit's own).
    """

    kind: str
    spec: Mapping[str, Any]
    label: str
    target: str | None = None
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class ChangeUnit:
    id: str
    author: str
    order: int
    stage: str
    source_file: str  # relative to the pipeline folder, POSIX separators
    checksum: str  # sha256 of the unit file
    kind: UnitKind
    template: str | None = None
    steps: tuple[Step, ...] = ()
    description: str = ""
    target: str | None = None
    transactional: bool | None = None  # None: the default for the target and operation
    recovery: Recovery = Recovery.MANUAL_INTERVENTION
    run_always: bool = False
    when: str | None = None
    has_rollback: bool = False  # python units: a rollback() is defined
    payload_checksum: str | None = None  # sha256 over the `file:` payloads it references
    risk: str | None = None  # the declared level (`risk:` / RISK), see core.risk
    checks: tuple[CheckSpec, ...] = ()
    on_check_fail: OnCheckFail = OnCheckFail.HALT
    has_check: bool = False  # python units: a check(ctx) is defined

    @property
    def has_preconditions(self) -> bool:
        return bool(self.checks) or self.has_check

    @property
    def change_type(self) -> str:
        return self.template if self.kind is UnitKind.TEMPLATE and self.template else "python"


@dataclass(frozen=True)
class Stage:
    name: str
    order: int
    folder: str  # relative folder, "" for units directly in the pipeline folder
    units: tuple[ChangeUnit, ...]
    depends_on: tuple[str, ...] | None = None  # None: the previous stage
    when: str | None = None
    run_after_failure: bool = False
    description: str = ""


@dataclass(frozen=True)
class Pipeline:
    id: str
    path: Path
    stages: tuple[Stage, ...]
    description: str = ""
    schedule: Any = None
    start_date: datetime | None = None
    tags: tuple[str, ...] = ()
    audit: AuditConfig = field(default_factory=AuditConfig)
    lock: LockConfig = field(default_factory=LockConfig)
    targets: Mapping[str, TargetConfig] = field(default_factory=dict)
    default_target: str | None = None
    recovery: Recovery = Recovery.MANUAL_INTERVENTION
    on_failure: OnFailure = OnFailure.ROLLBACK_FAILED
    run_mode: RunMode = RunMode.TASK_PER_UNIT
    metadata: Mapping[str, Any] = field(default_factory=dict)
    approval: ApprovalConfig = field(default_factory=ApprovalConfig)
    fingerprint: str = ""  # sha256 over every file the pipeline was built from
    rehearsal_scratch: Mapping[str, str] = field(default_factory=dict)  # target name -> scratch conn id (§14)
    fleet: FleetConfig | None = None
    member: str | None = None  # set on a member's view of a fleet pipeline (core.fleet.member_pipeline)

    @property
    def audit_key(self) -> str:
        """The key of this pipeline's audit trail and lease: the id, or ``<id>@<member>`` (SPEC §9, §13)."""
        return audit_key(self.id, self.member)

    @property
    def units(self) -> tuple[ChangeUnit, ...]:
        return tuple(unit for stage in self.stages for unit in stage.units)

    def unit(self, unit_id: str) -> ChangeUnit:
        for unit in self.units:
            if unit.id == unit_id:
                return unit
        raise KeyError(unit_id)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def target_of(self, unit: ChangeUnit) -> TargetConfig | None:
        name = unit.target or self.default_target
        return self.targets.get(name) if name else None


def audit_key(pipeline: str, member: str | None) -> str:
    """``pipeline`` outside a fleet, ``pipeline@member`` for a member ('@' is never in a pipeline id)."""
    return pipeline if member is None else f"{pipeline}@{member}"


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str
    trace: str = ""


@dataclass(frozen=True)
class AuditEntry:
    """One state transition of one change unit (SPEC §6). The latest entry of a change decides."""

    pipeline: str
    stage: str
    change_id: str
    author: str
    state: State
    action: Action
    created_at: datetime
    execution_id: str
    change_order: int = 0
    change_type: str = ""
    source_file: str = ""
    checksum: str = ""
    payload_checksum: str | None = None
    target: str | None = None
    transactional: bool = False
    tx_strategy: TxStrategy = TxStrategy.NON_TX
    recovery: Recovery = Recovery.MANUAL_INTERVENTION
    execution_ms: int | None = None
    error: ErrorInfo | None = None
    lock_token: int | None = None
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    triggered_by: str | None = None
    hostname: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    undo_state: Any = None  # what a rollback needs that only apply could know (e.g. generated ids)
    risk: str | None = None  # the unit's risk level when the entry was written (SPEC §14)
    check_outcome: Mapping[str, Any] | None = None  # what its preconditions saw and decided (SPEC §14)
    member: str | None = None  # the fleet member this entry belongs to (SPEC §13), None outside a fleet
    approved_by: str | None = None  # who approved the run that wrote it (SPEC §14), None when none was asked
    approval_note: str | None = None
    bundle_version: str | None = None  # the Airflow DAG bundle version (a GitDagBundle's commit), None outside
    seq: int | None = None  # store-assigned order, None until stored

    @property
    def audit_key(self) -> str:
        """The key the store files this entry under: the pipeline id, or ``<pipeline>@<member>``."""
        return audit_key(self.pipeline, self.member)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of every field."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, ErrorInfo):
                value = {"type": value.type, "message": value.message, "trace": value.trace}
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Build an entry from :meth:`to_dict` output (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["state"] = State(kwargs["state"])
        kwargs["action"] = Action(kwargs["action"])
        if "tx_strategy" in kwargs:
            kwargs["tx_strategy"] = TxStrategy(kwargs["tx_strategy"])
        if "recovery" in kwargs:
            kwargs["recovery"] = Recovery(kwargs["recovery"])
        if isinstance(kwargs.get("created_at"), str):
            kwargs["created_at"] = datetime.fromisoformat(kwargs["created_at"])
        err = kwargs.get("error")
        if isinstance(err, Mapping):
            kwargs["error"] = ErrorInfo(err.get("type", ""), err.get("message", ""), err.get("trace", ""))
        kwargs["metadata"] = dict(kwargs.get("metadata") or {})
        if kwargs.get("check_outcome") is not None:
            kwargs["check_outcome"] = dict(kwargs["check_outcome"])
        return cls(**kwargs)


@dataclass(frozen=True)
class LeaseInfo:
    """The current holder of a pipeline's lease as a store reports it."""

    key: str
    owner: str
    token: int
    acquired_at: datetime
    expires_at: datetime
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "owner": self.owner,
            "token": self.token,
            "acquired_at": self.acquired_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }
