"""The one exception tree of flamingock_provider.

::

    FlamingockError                      exit code 1 unless a subclass says otherwise
     ├── PipelineValidationError          a pipeline folder failed validation (carries every issue)
     ├── ConfigurationError               a connection, target or backend cannot be used as configured
     │    ├── UnknownMemberError          `--member` names no member of the fleet (lists the members)
     │    └── EmbeddedStoreError          the embedded audit store under a distributed executor (SPEC §3)
     ├── UnitExecutionError               a change unit's apply or rollback raised
     │    └── CheckFailedError            a precondition halted the run before its unit (SPEC §14)
     ├── CheckError                       a precondition could not be evaluated
     │    └── CheckTimeoutError           ... within its timeout_seconds (it was cut off)
     ├── ReadTimeoutError                 a bounded read (a check, a `plan` impact count) ran out of time
     ├── StatementError                   a SQL statement failed on its target (names statement and server message)
     │    └── TableLockTimeoutError       it waited longer than the target's lock_timeout_seconds for a table lock
     ├── TargetError                      a target system refused an operation (carries its code)
     ├── BlockedError                     a unit needs manual intervention or shows drift   (exit 4)
     ├── ChangeRunningError               the unit is being applied by the live lease holder now
     ├── ApprovalRequiredError            the run would apply or undo a unit that needs approval (exit 5)
     ├── LeaseError
     │    ├── LockTimeoutError            the lease was not acquired in time                (exit 3)
     │    └── LeaseLostError              the lease expired or was taken over mid-run
     ├── StoreError                       the audit store or lease store failed (I/O, outage)
     ├── RehearsalRefusedError            a rehearsal would touch a real target, or its scratch mapping is wrong
     └── UsageError                       bad command-line or API arguments                  (exit 2)
          └── DriftNotAcceptedError       marking a changed file applied without accepting its checksum

Backend errors (sqlite3, pymongo, botocore, redis, confluent-kafka) are translated once per backend, always with
``raise ... from err``. Every message says what failed, which value, and what to do. Every class
survives a pickle round trip (``__reduce__`` rebuilds it from its fields), so errors cross process
boundaries (Airflow's task runner, multiprocessing) intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class FlamingockError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code = 1

    def _fields(self) -> tuple[object, ...]:
        """The constructor arguments that rebuild this error (subclasses with their own __init__ override)."""
        return tuple(self.args)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), self._fields())


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a pipeline folder: the file (relative to the pipeline) and the message."""

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}" if self.file else self.message


class PipelineValidationError(FlamingockError):
    """A pipeline folder is invalid; nothing from it may run."""

    def __init__(self, pipeline_dir: str, issues: list[ValidationIssue]) -> None:
        self.pipeline_dir = pipeline_dir
        self.issues = list(issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        noun = "problem" if len(self.issues) == 1 else "problems"
        super().__init__(
            f"pipeline {pipeline_dir!r} is invalid ({len(self.issues)} {noun}); nothing was applied:\n{lines}"
        )

    def _fields(self) -> tuple[object, ...]:
        return (self.pipeline_dir, self.issues)

    @property
    def first_file(self) -> str:
        return self.issues[0].file if self.issues else ""


class ConfigurationError(FlamingockError):
    """A connection, target or backend cannot be used as configured."""


class UnknownMemberError(ConfigurationError):
    """``--member`` names no member of the fleet (SPEC §13: exit 1, listing the members)."""

    def __init__(self, name: str, members: list[str]) -> None:
        self.name = name
        self.members = list(members)
        shown = ", ".join(self.members) or "(none)"
        super().__init__(f"--member {name!r}: no such member in the fleet; the members are: {shown}")

    def _fields(self) -> tuple[object, ...]:
        return (self.name, self.members)


class EmbeddedStoreError(ConfigurationError):
    """The embedded (one machine) audit store was asked to serve a distributed executor's workers."""

    def __init__(self, pipeline_yaml: str, executor: str) -> None:
        self.pipeline_yaml = pipeline_yaml
        self.executor = executor
        super().__init__(
            f"the embedded audit store lives on one machine; set audit.conn_id in {pipeline_yaml} to a postgres, "
            f"mysql, mongo or aws connection"
        )

    def _fields(self) -> tuple[object, ...]:
        return (self.pipeline_yaml, self.executor)


class UsageError(FlamingockError):
    """Bad arguments to a command."""

    exit_code = 2


class UnitExecutionError(FlamingockError):
    """A change unit's apply or rollback raised."""

    def __init__(self, unit_id: str, phase: str, cause: BaseException) -> None:
        self.unit_id = unit_id
        self.phase = phase
        self.cause = cause
        super().__init__(f"change {unit_id!r}: {phase} failed: {type(cause).__name__}: {cause}")

    def _fields(self) -> tuple[object, ...]:
        return (self.unit_id, self.phase, self.cause)


class TargetError(FlamingockError):
    """A target system refused or failed an operation of a change; ``code`` is the system's own error name."""

    def __init__(self, message: str, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)

    def _fields(self) -> tuple[object, ...]:
        return (str(self), self.code)


class CheckFailedError(UnitExecutionError):
    """A precondition said no (or could not answer) and halted the run before its unit; nothing ran."""

    def __init__(self, unit_id: str, message: str, outcome: dict[str, object]) -> None:
        self.outcome = outcome
        self.message = message
        super().__init__(unit_id, "precondition", CheckError(message))

    def _fields(self) -> tuple[object, ...]:
        return (self.unit_id, self.message, self.outcome)


class CheckError(FlamingockError):
    """A precondition could not be evaluated: it timed out or its target failed."""


class CheckTimeoutError(CheckError):
    """A precondition did not answer within its ``timeout_seconds``; it was cut off."""


class ReadTimeoutError(FlamingockError):
    """A read-only, time-bounded query did not finish in time and was interrupted."""


class StatementError(FlamingockError):
    """A SQL statement failed on its target; the message names the statement and the server's answer."""

    def __init__(self, statement: str, target: str, detail: str) -> None:
        self.statement = statement
        self.target = target
        self.detail = detail
        super().__init__(
            f"statement {_preview(statement)!r} failed on target {target!r}: {detail}; fix the statement (or the "
            f"data it meets) and run again"
        )

    def _fields(self) -> tuple[object, ...]:
        return (self.statement, self.target, self.detail)


class TableLockTimeoutError(StatementError):
    """A statement waited longer than ``lock_timeout_seconds`` for a table lock and was cancelled."""

    def __init__(self, statement: str, target: str, table: str | None, seconds: float, detail: str) -> None:
        self.table = table
        self.seconds = seconds
        what = f"table {table}" if table else "its table"
        FlamingockError.__init__(
            self,
            f"statement {_preview(statement)!r} on target {target!r} waited more than {seconds:g} s for the lock "
            f"on {what} (lock_timeout_seconds) and was cancelled ({detail}): another session holds that table lock "
            f"(a long query or an open transaction). Find the holder (pg_stat_activity / SHOW PROCESSLIST) and run "
            f"again when it is done, or raise lock_timeout_seconds",
        )
        self.statement, self.target, self.detail = statement, target, detail

    def _fields(self) -> tuple[object, ...]:
        return (self.statement, self.target, self.table, self.seconds, self.detail)


def _preview(statement: str, limit: int = 80) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class BlockedError(FlamingockError):
    """A change unit is blocked: manual intervention or drift. Carries the fix command."""

    exit_code = 4

    def __init__(self, unit_id: str, state: str | None, reason: str, fix: str) -> None:
        self.unit_id = unit_id
        self.state = state
        self.reason = reason
        self.fix = fix
        super().__init__(f"change {unit_id!r} is blocked ({state}): {reason}. To resolve: {fix}")

    def _fields(self) -> tuple[object, ...]:
        return (self.unit_id, self.state, self.reason, self.fix)


class ChangeRunningError(FlamingockError):
    """The unit is STARTED by the execution that holds the live lease: it is running, not stuck."""

    def __init__(self, unit_id: str, holder: str | None = None) -> None:
        self.unit_id = unit_id
        self.holder = holder
        by = f" by {holder!r}" if holder else ""
        super().__init__(
            f"change {unit_id!r} is running now{by}, under the live lease: it is not stuck, and nothing was "
            f"recorded; wait for that run to finish, then check `flamingock status`"
        )

    def _fields(self) -> tuple[object, ...]:
        return (self.unit_id, self.holder)


class ApprovalRequiredError(FlamingockError):
    """The run would apply (or undo) units that need a person's approval, and none was given (SPEC §14).

    Raised under the lease, before any unit runs; ``units`` holds ``(change id, risk level)`` pairs.
    """

    exit_code = 5

    def __init__(self, pipeline: str, required: str, action: str, units: list[tuple[str, str]]) -> None:
        self.pipeline = pipeline
        self.required = required
        self.action = action
        self.units = [tuple(u) for u in units]
        named = ", ".join(f"{uid} ({risk})" for uid, risk in self.units)
        super().__init__(
            f"pipeline {pipeline!r} needs approval (approval.required: {required}) to {action} {named}; nothing "
            f"was {'undone' if action == 'undo' else 'applied'}. Approve the run: answer its approve task in "
            f'Airflow, or run the command again with --approve "NOTE"'
        )

    def _fields(self) -> tuple[object, ...]:
        return (self.pipeline, self.required, self.action, self.units)


class LeaseError(FlamingockError):
    """Base of lease (distributed lock) errors."""


class LockTimeoutError(LeaseError):
    """The pipeline's lease was not acquired within the wait timeout."""

    exit_code = 3

    def __init__(self, key: str, owner: str | None, expires_at: datetime | None, waited_s: float) -> None:
        self.key = key
        self.owner = owner
        self.expires_at = expires_at
        expiry = expires_at.isoformat() if expires_at else "unknown"
        super().__init__(
            f"lock for pipeline {key!r} not acquired after {waited_s:.0f}s: held by {owner!r} until {expiry}; "
            f"wait for that run to finish, or if it is dead run `flamingock unlock <PIPELINE_DIR>`"
        )
        self.waited_s = waited_s

    def _fields(self) -> tuple[object, ...]:
        return (self.key, self.owner, self.expires_at, self.waited_s)


class LeaseLostError(LeaseError):
    """This runner no longer holds the lease: it must stop before any further change or audit write."""

    def __init__(self, key: str, owner: str, token: int, detail: str = "") -> None:
        self.key = key
        self.owner = owner
        self.token = token
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"lease lost for pipeline {key!r}: owner {owner!r} token {token} no longer holds it{extra}; "
            f"stopped before any further change. Check `flamingock status` and run again"
        )
        self.detail = detail

    def _fields(self) -> tuple[object, ...]:
        return (self.key, self.owner, self.token, self.detail)


class StoreError(FlamingockError):
    """The audit store or lease store failed (outage, I/O error, corrupt data)."""


class RehearsalRefusedError(FlamingockError):
    """A rollback rehearsal refused to start (nothing ran): a scratch connection is a real one, or one is missing."""


class DriftNotAcceptedError(UsageError):
    """``fix`` as applied of a unit whose file changed since it was applied, without accepting the new checksum."""

    def __init__(self, unit_id: str, source_file: str, pipeline_dir: str) -> None:
        from flamingock_provider.commandline import fix_command

        self.unit_id = unit_id
        self.source_file = source_file
        self.pipeline_dir = pipeline_dir
        command = fix_command(pipeline_dir, unit_id, "applied", accept_checksum=True)
        super().__init__(
            f"change {unit_id!r}: {source_file} changed since it was applied, so nothing was recorded; to record the "
            f"new content as applied run `{command}`"
        )

    def _fields(self) -> tuple[object, ...]:
        return (self.unit_id, self.source_file, self.pipeline_dir)
