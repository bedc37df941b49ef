"""The runner: one engine for the CLI and the Airflow tasks.

``Engine`` reads the audit state once per run (``store.latest``), plans with :mod:`core.plan`, and
drives :class:`UnitExecutor` unit by unit: apply, compensation in the ``on_failure`` scope, undo,
and manual fixes. Callers hold the lease (the CLI command or the Airflow lock sensor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flamingock_provider.core.executor import UnitExecutor
from flamingock_provider.core.model import (
    APPLIED_STATES,
    Action,
    AuditEntry,
    ChangeUnit,
    NextAction,
    OnFailure,
    Pipeline,
    Stage,
    State,
)
from flamingock_provider.core.plan import Decision, MarkerCheck, decide, drifted, fix_command, plan_pipeline
from flamingock_provider.exceptions import (
    BlockedError,
    CheckFailedError,
    ConfigurationError,
    UnitExecutionError,
    UsageError,
)

FALSE_WORDS = frozenset({"", "false", "0", "no", "off", "none"})


@dataclass
class RunResult:
    """What a run did, in the SPEC §11 JSON shape."""

    pipeline: str
    kind: str = "apply"  # apply | undo
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    compensated: list[str] = field(default_factory=list)
    failed: dict[str, str] | None = None
    blocked: dict[str, Any] | None = None
    checks: dict[str, str] = field(default_factory=dict)  # unit id -> what its preconditions decided

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 4 if self.blocked else 0

    def to_json(self) -> dict[str, Any]:
        key = "applied" if self.kind == "apply" else "rolled_back"
        out: dict[str, Any] = {"pipeline": self.pipeline, key: self.done, "skipped": self.skipped}
        out.update(failed=self.failed, blocked=self.blocked)
        if self.kind == "apply":
            out["compensated"] = self.compensated
            out["checks"] = self.checks
        return out


class Engine:
    """Plans and runs a pipeline over one audit store with one executor."""

    def __init__(self, executor: UnitExecutor, *, pipeline_dir: str | None = None) -> None:
        self.executor = executor
        self.pipeline: Pipeline = executor.pipeline
        self.store = executor.store
        self.pipeline_dir = pipeline_dir or str(self.pipeline.path)

    # -- reading ----------------------------------------------------------------------------

    def snapshot(self) -> Mapping[str, AuditEntry]:
        """Return the latest entry per change: one store query."""
        return self.store.latest(self.pipeline.id)

    def plan(self, snapshot: Mapping[str, AuditEntry] | None = None) -> list[Decision]:
        latest = self.snapshot() if snapshot is None else snapshot
        return plan_pipeline(self.pipeline, latest, pipeline_dir=self.pipeline_dir, markers=self._markers())

    def _markers(self) -> MarkerCheck:
        def check(unit: ChangeUnit, started: AuditEntry) -> bool:
            config = self.pipeline.target_of(unit)
            if config is None:
                return False
            session = self.executor.targets(config)
            try:
                return session.has_marker(self.pipeline.id, unit.id, started.execution_id)
            finally:
                session.close()

        return check

    # -- apply ------------------------------------------------------------------------------

    def apply(self, until: str | None = None) -> RunResult:
        """Apply every pending unit in order; stop at a blocked stage or a failure."""
        if until is not None:
            self._require_unit(until, "--until")
        result = RunResult(self.pipeline.id)
        decisions = {d.unit.id: d for d in self.plan()}
        failed_at: Stage | None = None
        for stage in self.pipeline.stages:
            if failed_at is not None and not stage.run_after_failure:
                continue
            if not self._stage_enabled(stage):
                result.skipped.extend(u.id for u in stage.units)
                continue
            if self._stage_blocked(stage, decisions, result):
                break
            if not self._run_stage(stage, decisions, result, until) and failed_at is None:
                failed_at = stage
            if until is not None and any(u.id == until for u in stage.units):
                break
        return result

    def _stage_blocked(self, stage: Stage, decisions: Mapping[str, Decision], result: RunResult) -> bool:
        blocked = next((decisions[u.id] for u in stage.units if decisions[u.id].action is NextAction.BLOCKED), None)
        if blocked is None:
            return False
        result.blocked = {
            "id": blocked.unit.id,
            "state": blocked.state.value if blocked.state else None,
            "reason": blocked.reason,
            "fix": blocked.fix,
        }
        return True

    def _run_stage(self, stage: Stage, decisions: Mapping[str, Decision], result: RunResult, until: str | None) -> bool:
        for unit in stage.units:
            if not self.run_unit(unit, decisions[unit.id], result):
                return False
            if unit.id == until:
                break
        return True

    def run_unit(self, unit: ChangeUnit, decision: Decision, result: RunResult, *, compensate: bool = True) -> bool:
        """Run one planned unit; on failure record it in ``result`` and compensate. False if it failed.

        ``compensate=False`` leaves compensation to the caller (Airflow runs it as its own task).
        """
        if decision.action is NextAction.BLOCKED:
            raise BlockedError(
                unit.id, decision.state.value if decision.state else None, decision.reason, decision.fix or ""
            )
        if decision.reconcile:
            self.executor.record(unit, State.APPLIED, Action.APPLY, strategy=decision.latest.tx_strategy)  # type: ignore[union-attr]
            result.skipped.append(unit.id)
            return True
        if decision.action is NextAction.SKIP or not self.condition_true(unit.when, unit.source_file):
            result.skipped.append(unit.id)
            return True
        try:
            entry = self.executor.apply(unit)
        except UnitExecutionError as err:
            if isinstance(err, CheckFailedError):
                result.checks[unit.id] = str(err.outcome.get("outcome"))
            result.failed = {"id": unit.id, "error": str(err.cause)}
            if compensate:
                result.compensated = self.compensate()
            return False
        outcome = entry.check_outcome
        if outcome is not None:
            result.checks[unit.id] = str(outcome.get("outcome"))
        if entry.state is State.CHECK_FAILED or (outcome is not None and outcome.get("outcome") == "mark_applied"):
            result.skipped.append(unit.id)  # its preconditions said no: nothing ran (SPEC §14)
            return True
        result.done.append(unit.id)
        return True

    def _stage_enabled(self, stage: Stage) -> bool:
        return self.condition_true(stage.when, f"{stage.folder}/stage.yaml")

    def condition_true(self, expression: str | None, where: str = "") -> bool:
        """Evaluate a ``when:`` expression with the run's renderer; no renderer means true.

        A template error (an undefined name, a refusal of the sandbox) is the author's: it becomes a
        :class:`ConfigurationError` naming ``where`` (the unit file or stage.yaml) and the field.
        """
        if not expression:
            return True
        renderer = self.executor.renderer
        if renderer is None:
            return True
        try:
            rendered = renderer(expression)
        except Exception as err:
            place = f"{where}: " if where else ""
            raise ConfigurationError(
                f"{place}field 'when': cannot evaluate {expression!r}: {type(err).__name__}: {err}; fix the expression"
            ) from err
        return str(rendered).strip().lower() not in FALSE_WORDS

    # -- compensation -----------------------------------------------------------------------

    def compensate(self, snapshot: Mapping[str, AuditEntry] | None = None) -> list[str]:
        """Roll back this execution's failed unit and its ``on_failure`` scope, newest first.

        Reads the audit state once; does nothing when no unit of this execution failed.
        """
        latest = self.snapshot() if snapshot is None else snapshot
        execution = self.executor.run.execution_id
        mine = {cid: e for cid, e in latest.items() if e.execution_id == execution}
        failed = next((self.pipeline.unit(cid) for cid, e in mine.items() if e.state is State.FAILED), None)
        if failed is None:
            return []
        rolled: list[str] = []
        for unit in reversed(self._scope(failed, mine)):
            entry = mine[unit.id]
            if entry.state is State.FAILED and entry.transactional:
                continue  # nothing committed
            if not self.executor.can_roll_back(unit):
                self.executor.log.warning("change %s is not compensable: no rollback; left as is", unit.id)
                continue
            try:
                self.executor.rollback(unit, entry, Action.ROLLBACK)
            except UnitExecutionError:
                self.executor.log.error("rollback of %s failed; it needs manual intervention", unit.id)
                continue
            rolled.append(unit.id)
        return rolled

    def record_interrupted(self, unit: ChangeUnit, error: BaseException) -> AuditEntry | None:
        """Close a unit this execution left STARTED (its worker died): FAILED, or APPLIED if it committed.

        A TX_SEPARATE unit whose marker is in the target did commit, so it is recorded APPLIED.
        Returns None, writing nothing, unless the latest entry is STARTED by this execution.
        """
        latest = self.snapshot().get(unit.id)
        if latest is None or latest.state is not State.STARTED:
            return None
        if latest.execution_id != self.executor.run.execution_id:
            return None
        strategy = latest.tx_strategy
        if latest.action is not Action.APPLY:
            return self.executor.record(unit, State.ROLLBACK_FAILED, latest.action, strategy=strategy, error=error)
        decision = decide(unit, latest, pipeline_dir=self.pipeline_dir, markers=self._markers())
        if decision.reconcile:
            return self.executor.record(unit, State.APPLIED, latest.action, strategy=strategy)
        return self.executor.record(unit, State.FAILED, latest.action, strategy=strategy, error=error)

    def _scope(self, failed: ChangeUnit, mine: Mapping[str, AuditEntry]) -> list[ChangeUnit]:
        scope = self.pipeline.on_failure
        candidates = [
            u for u in self.pipeline.units if u.id in mine and (mine[u.id].state in APPLIED_STATES or u.id == failed.id)
        ]
        if scope is OnFailure.ROLLBACK_FAILED:
            return [failed]
        if scope is OnFailure.ROLLBACK_STAGE:
            return [u for u in candidates if u.stage == failed.stage]
        return candidates

    # -- undo -------------------------------------------------------------------------------

    def undo_targets(self, to: str | None = None, last: int | None = None) -> list[ChangeUnit]:
        """Units an undo rolls back, newest first. Raises before anything changes when one can't be."""
        if (to is None) == (last is None):
            raise UsageError("undo needs exactly one of --to ID or --last N")
        latest = self.snapshot()
        units = list(self.pipeline.units)
        if to is not None:
            index = self._require_unit(to, "--to")
            after = units[index + 1 :]
        else:
            if last is None or last < 1:
                raise UsageError(f"--last must be a positive number, got {last}")
            applied = [u for u in units if latest.get(u.id) and latest[u.id].state in APPLIED_STATES]
            after = applied[-last:]
        chosen = [u for u in after if u.id in latest and latest[u.id].state in APPLIED_STATES]
        self._check_undoable(after, latest)
        return list(reversed(chosen))

    def _check_undoable(self, units: Sequence[ChangeUnit], latest: Mapping[str, AuditEntry]) -> None:
        for unit in units:
            entry = latest.get(unit.id)
            if (
                entry is None
                or entry.state in APPLIED_STATES
                or entry.state in (State.ROLLED_BACK, State.MANUAL_MARKED_AS_ROLLED_BACK)
            ):
                if entry is not None and entry.state in APPLIED_STATES and not self.executor.can_roll_back(unit):
                    raise UsageError(
                        f"change {unit.id!r} ({unit.source_file}) has no rollback, so nothing was undone; "
                        f"add 'rollback:' (or def rollback) to it, or undo to a later change"
                    )
                continue
            raise BlockedError(
                unit.id,
                entry.state.value,
                f"its last attempt ended {entry.state.value}; resolve it before undo",
                fix_command(self.pipeline_dir, unit.id, "rolled-back"),
            )

    def undo(self, to: str | None = None, last: int | None = None) -> RunResult:
        """Roll back applied units after ``to`` (or the last ``last``), newest first; stop at a failure."""
        result = RunResult(self.pipeline.id, kind="undo")
        latest = self.snapshot()
        for unit in self.undo_targets(to, last):
            try:
                self.executor.rollback(unit, latest[unit.id], Action.UNDO)
            except UnitExecutionError as err:
                result.failed = {"id": unit.id, "error": str(err.cause)}
                break
            result.done.append(unit.id)
        return result

    # -- fix --------------------------------------------------------------------------------

    def fix(self, unit_id: str, as_: str, accept_checksum: bool = False) -> AuditEntry:
        """Mark a unit applied or rolled back by hand (after checking the target)."""
        self._require_unit(unit_id, "change id")
        unit = self.pipeline.unit(unit_id)
        latest = self.snapshot().get(unit_id)
        if as_ == "applied":
            drift = latest is not None and latest.state in APPLIED_STATES and drifted(unit, latest)
            if drift and not accept_checksum:
                raise UsageError(
                    f"change {unit_id!r}: {unit.source_file} changed since it was applied; "
                    f"add --accept-checksum to record the new content as applied"
                )
            return self.executor.record(unit, State.MANUAL_MARKED_AS_APPLIED, Action.FIX)
        if as_ == "rolled-back":
            return self.executor.record(unit, State.MANUAL_MARKED_AS_ROLLED_BACK, Action.FIX)
        raise UsageError(f"--as must be 'applied' or 'rolled-back', got {as_!r}")

    def _require_unit(self, unit_id: str, what: str) -> int:
        ids = [u.id for u in self.pipeline.units]
        if unit_id not in ids:
            from flamingock_provider.core.suggest import did_you_mean

            raise UsageError(
                f"{what} {unit_id!r}: no such change in pipeline {self.pipeline.id!r}{did_you_mean(unit_id, ids)}"
            )
        return ids.index(unit_id)
