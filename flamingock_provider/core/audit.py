"""The audit-store protocol: an append-only log whose latest entry per change decides."""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from flamingock_provider.core.lease import Fence
from flamingock_provider.core.model import (
    Action,
    AuditEntry,
    ChangeUnit,
    ErrorInfo,
    Pipeline,
    State,
    TargetConfig,
    TxStrategy,
    audit_key,
)

if TYPE_CHECKING:
    from flamingock_provider.core.targets import TargetSession

MAX_ERROR_BYTES = 16 * 1024
KEYS_PER_QUERY = 500  # members read in one `IN (...)` query: 100 members is one query, 10,000 is 20


def by_member(pipeline: str, members: Sequence[str], entries: Iterable[AuditEntry]) -> dict[str, dict[str, AuditEntry]]:
    """Group the latest entries of a fleet read by member, then change id (every member present)."""
    out: dict[str, dict[str, AuditEntry]] = {name: {} for name in members}
    for entry in entries:
        if entry.pipeline == pipeline and entry.member in out:
            out[entry.member][entry.change_id] = entry
    return out


def key_chunks(pipeline: str, members: Sequence[str]) -> list[list[str]]:
    """The members' audit keys, in chunks of :data:`KEYS_PER_QUERY` (one query each)."""
    keys = [audit_key(pipeline, name) for name in members]
    return [keys[i : i + KEYS_PER_QUERY] for i in range(0, len(keys), KEYS_PER_QUERY)]


class AuditStore(Protocol):
    """Append-only audit log for every pipeline of one store.

    ``fence``: when the store also keeps the lease, the append must be conditional on the lease
    being held by that owner and token (raise LeaseLostError otherwise). ``tx``: the shared
    transaction, i.e. a target session this same store returned from :meth:`shared_target`; the entry
    is written inside that session's open transaction. A store accepts only its own sessions there
    (checked with ``isinstance``) and raises ConfigurationError for any other.
    """

    def append(self, entry: AuditEntry, *, fence: Fence | None = None, tx: TargetSession | None = None) -> AuditEntry:
        """Store one entry; return it with ``seq`` set."""

    def latest(self, pipeline: str) -> Mapping[str, AuditEntry]:
        """Return the latest entry of every change of ``pipeline`` in a constant number of queries."""

    def latest_members(self, pipeline: str, members: Sequence[str]) -> Mapping[str, Mapping[str, AuditEntry]]:
        """Return the latest entry of every change of each fleet member, in a constant number of queries.

        One read for the whole fleet (SPEC §13): keyed by member name, then change id; a member with no
        entry yet maps to ``{}``.
        """

    def history(self, pipeline: str, change_id: str | None = None) -> Sequence[AuditEntry]:
        """Return entries oldest first (``pipeline`` is an audit key: a member's is ``<pipeline>@<member>``)."""

    def shared_target(self, target: TargetConfig) -> TargetSession | None:
        """Return a target session sharing the store's transaction (TX_SHARED), or None."""

    def close(self) -> None: ...


def truncate_utf8(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


@dataclass(frozen=True)
class RunInfo:
    """Who runs: one execution id for a whole run, plus the Airflow task identity when there is one."""

    execution_id: str
    owner: str
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    triggered_by: str | None = None
    hostname: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    approved_by: str | None = None  # the person who approved this run (SPEC §14)
    approval_note: str | None = None
    bundle_version: str | None = None  # the Airflow DAG bundle version the run's code came from


def error_info(err: BaseException) -> ErrorInfo:
    """Type, message and trace of the error's cause, within the 16 KiB an entry allows."""
    cause: BaseException = getattr(err, "cause", None) or err
    trace = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    message = truncate_utf8(str(cause), MAX_ERROR_BYTES // 4)
    return ErrorInfo(type(cause).__name__, message, truncate_utf8(trace, MAX_ERROR_BYTES - len(message) - 256))


def build_entry(
    pipeline: Pipeline,
    unit: ChangeUnit,
    run: RunInfo,
    state: State,
    action: Action,
    *,
    strategy: TxStrategy,
    created_at: datetime,
    execution_ms: int | None = None,
    error: BaseException | None = None,
    undo_state: Any = None,
    lock_token: int | None = None,
    risk: str | None = None,
    check_outcome: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Return the SPEC §6 entry of one state transition of ``unit`` in ``run``."""
    return AuditEntry(
        pipeline=pipeline.id,
        stage=unit.stage,
        change_id=unit.id,
        author=unit.author,
        state=state,
        action=action,
        created_at=created_at,
        execution_id=run.execution_id,
        change_order=unit.order,
        change_type=unit.change_type,
        source_file=unit.source_file,
        checksum=unit.checksum,
        payload_checksum=unit.payload_checksum,
        target=unit.target or pipeline.default_target,
        transactional=strategy is not TxStrategy.NON_TX,
        tx_strategy=strategy,
        recovery=unit.recovery,
        execution_ms=execution_ms,
        error=None if error is None else error_info(error),
        lock_token=lock_token,
        dag_id=run.dag_id,
        run_id=run.run_id,
        task_id=run.task_id,
        try_number=run.try_number,
        triggered_by=run.triggered_by,
        hostname=run.hostname,
        metadata=dict(pipeline.metadata),
        undo_state=undo_state,
        risk=risk,
        check_outcome=None if check_outcome is None else dict(check_outcome),
        member=pipeline.member,
        approved_by=run.approved_by,
        approval_note=run.approval_note,
        bundle_version=run.bundle_version,
    )
