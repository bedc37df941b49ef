"""The runner: one engine for the CLI and the Airflow tasks, and the only place stage rules live.

Every operation here runs while the caller holds the pipeline's lease (the CLI command, or the
Airflow task that adopted the lock task's lease) and decides from the audit state it reads itself,
under that lease (SPEC §7): an earlier plan can only let a caller skip calling it.

- :meth:`Engine.run_stage` runs one stage, or the units of one Airflow task: ``when:``, a blocked unit
  stopping the stage before anything in it runs, skipping what is done, running the rest.
- :meth:`Engine.apply` is a loop over stages; :meth:`Engine.compensate` rolls back in the
  ``on_failure`` scope; :meth:`Engine.recover` is the Airflow rollback task's whole job.
- :meth:`Engine.undo` and :meth:`Engine.fix`; :meth:`Engine.plan` for status and plan (no lease).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flamingock_provider.commandline import blocked_error, blocked_report
from flamingock_provider.core.approval import Gated, gated_units
from flamingock_provider.core.executor import UnitExecutor
from flamingock_provider.core.model import (
    APPLIED_STATES,
    ROLLED_BACK_STATES,
    Action,
    ApprovalRequired,
    AuditEntry,
    ChangeUnit,
    LeaseInfo,
    NextAction,
    OnFailure,
    Pipeline,
    RunKind,
    Stage,
    State,
)
from flamingock_provider.core.plan import (
    Decision,
    MarkerCheck,
    Resolution,
    Skips,
    decide,
    drifted,
    plan_pipeline,
    run_skips,
)
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.exceptions import (
    ApprovalRequiredError,
    ChangeRunningError,
    CheckFailedError,
    ConfigurationError,
    DriftNotAcceptedError,
    UnitExecutionError,
    UsageError,
)

FALSE_WORDS = frozenset({"", "false", "0", "no", "off", "none"})
FIX_STATES = frozenset({State.MANUAL_MARKED_AS_APPLIED, State.MANUAL_MARKED_AS_ROLLED_BACK})
Snapshot = Mapping[str, AuditEntry]


@dataclass
class RunResult:
    """What a run (or one stage of it) did, in the SPEC §11 JSON shape; ``notes`` say why units were skipped."""

    pipeline: str
    kind: RunKind = RunKind.APPLY
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    compensated: list[str] = field(default_factory=list)
    failed: dict[str, str] | None = None
    blocked: dict[str, Any] | None = None
    notes: dict[str, str] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)  # unit id -> what its preconditions decided

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 4 if self.blocked else 0

    def skip(self, units: Iterable[ChangeUnit], why: str) -> None:
        for unit in units:
            self.skipped.append(unit.id)
            self.notes[unit.id] = why

    def to_json(self) -> dict[str, Any]:
        key = "applied" if self.kind is RunKind.APPLY else "rolled_back"
        out: dict[str, Any] = {"pipeline": self.pipeline, key: self.done, "skipped": self.skipped}
        out.update(failed=self.failed, blocked=self.blocked)
        if self.kind is RunKind.APPLY:
            out["compensated"] = self.compensated
            out["checks"] = self.checks
        return out


@dataclass(frozen=True)
class Recovered:
    """What the compensation of one stage (or run) did: the failures found, what rolled back, what did not."""

    failed: list[str]
    rolled_back: list[str]
    rollback_failed: list[str]


class Engine:
    """Plans and runs a pipeline over one audit store with one executor."""

    def __init__(self, executor: UnitExecutor, *, pipeline_dir: str | None = None) -> None:
        self.executor = executor
        self.pipeline: Pipeline = executor.pipeline
        self.store = executor.store
        self.pipeline_dir = pipeline_dir or str(self.pipeline.path)

    # -- reading ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Return the latest entry per change: one store query."""
        return self.store.latest(self.pipeline.audit_key)

    def plan(self, snapshot: Snapshot | None = None, *, live_token: int | None = None) -> list[Decision]:
        """Decide every unit. ``live_token``: the lease holder's token when the caller is not that holder."""
        latest = self.snapshot() if snapshot is None else snapshot
        return plan_pipeline(self.pipeline, latest, markers=self._markers(), live_token=live_token)

    def skips(self, decisions: Sequence[Decision], action: str = "apply", undo: Sequence[ChangeUnit] = ()) -> Skips:
        """What this run's tasks cannot do (see :func:`run_skips`), with ``when:`` rendered as run_stage does.

        ``undo``: the units an undo run rolls back (:meth:`undo_targets`).

        A stage whose ``when`` is false skips all its units; a unit's own ``when`` counts only when it
        would be applied (a reconcile or a blocked unit still runs, as in :meth:`run_stage`). An
        expression that cannot be evaluated leaves its unit to run, so its task reports the error.
        """
        if action != "apply":
            return run_skips(self.pipeline.stages, decisions, action, undo=undo)
        by_id = {d.unit.id: d for d in decisions}
        inactive: set[str] = set()
        for stage in self.pipeline.stages:
            if not self._condition_or_true(stage.when, f"{stage.folder}/stage.yaml"):
                inactive.update(u.id for u in stage.units)
                continue
            for unit in stage.units:
                decision = by_id.get(unit.id)
                applies = decision is not None and decision.action is NextAction.APPLY and not decision.reconcile
                if applies and not self._condition_or_true(unit.when, unit.source_file):
                    inactive.add(unit.id)
        return run_skips(self.pipeline.stages, decisions, action, inactive)

    def _condition_or_true(self, expression: str | None, where: str) -> bool:
        try:
            return self.condition_true(expression, where)
        except ConfigurationError:
            return True

    def _decisions(self, snapshot: Snapshot, units: Iterable[ChangeUnit]) -> dict[str, Decision]:
        markers = self._markers()
        return {u.id: decide(u, snapshot.get(u.id), markers=markers) for u in units}

    def _markers(self) -> MarkerCheck:
        def check(unit: ChangeUnit, started: AuditEntry) -> bool:
            config = self.pipeline.target_of(unit)
            if config is None:
                return False
            session = self.executor.targets(config)
            try:
                return session.has_marker(self.pipeline.audit_key, unit.id, started.execution_id)
            finally:
                session.close()

        return check

    # -- apply ------------------------------------------------------------------------------

    def apply(self, until: str | None = None) -> RunResult:
        """Apply every pending unit in stage order; stop at a blocked stage; after a failure run only clean-up stages."""
        if until is not None:
            self.require_unit(until, "apply until")
        result = RunResult(self.pipeline.id)
        snapshot = self.snapshot()  # read under the lease, which this run holds throughout
        if self.asks_approval:
            decisions = self._decisions(snapshot, self.pipeline.units)
            self.require_approval(self.pending(self.pipeline.units, decisions, until))
        failed = False
        for stage in self.pipeline.stages:
            if failed and not stage.run_after_failure:
                continue
            self.run_stage(stage, until=until, result=result, compensate=not failed, snapshot=snapshot)
            if result.blocked is not None:
                break
            failed = failed or result.failed is not None
            if until is not None and any(u.id == until for u in stage.units):
                break
        return result

    def run_stage(
        self,
        stage: Stage,
        *,
        units: Sequence[ChangeUnit] | None = None,
        until: str | None = None,
        result: RunResult | None = None,
        compensate: bool = True,
        snapshot: Snapshot | None = None,
    ) -> RunResult:
        """Run ``stage`` (or only ``units`` of it) under the held lease, deciding from a fresh snapshot.

        ``compensate=False`` leaves compensation of a failure to the caller (Airflow's rollback task).
        ``snapshot`` may be passed only by a caller that read it while holding the lease it still holds.
        """
        result = result if result is not None else RunResult(self.pipeline.id)
        chosen = tuple(stage.units if units is None else units)
        if not self.condition_true(stage.when, f"{stage.folder}/stage.yaml"):
            result.skip(chosen, f"stage {stage.name!r}: when {stage.when!r} is false")
            return result
        decisions = self._decisions(self.snapshot() if snapshot is None else snapshot, stage.units)
        blocked = next((decisions[u.id] for u in stage.units if decisions[u.id].action is NextAction.BLOCKED), None)
        if blocked is not None:
            result.blocked = blocked_report(self.pipeline_dir, blocked, self.pipeline.member)
            return result
        if self.asks_approval:
            self.require_approval(self.pending(chosen, decisions, until))
        for unit in chosen:
            if not self._run_unit(unit, decisions[unit.id], result):
                if compensate:
                    result.compensated = self.compensate()
                break
            if unit.id == until:
                break
        return result

    def _run_unit(self, unit: ChangeUnit, decision: Decision, result: RunResult) -> bool:
        """Run one decided unit; record a failure in ``result``. False if it failed."""
        if decision.action is NextAction.BLOCKED:
            raise blocked_error(self.pipeline_dir, decision, self.pipeline.member)
        if decision.reconcile:
            assert decision.latest is not None
            self.executor.reconcile(unit, decision.latest)
            result.skip([unit], "its transaction had committed before a crash: recorded APPLIED")
            return True
        if decision.action is NextAction.SKIP:
            result.skip([unit], decision.reason or "nothing to do")
            return True
        if not self.condition_true(unit.when, unit.source_file):
            result.skip([unit], f"when {unit.when!r} is false")
            return True
        try:
            entry = self.executor.apply(unit)
        except UnitExecutionError as err:
            if isinstance(err, CheckFailedError):
                result.checks[unit.id] = str(err.outcome.get("outcome"))
            result.failed = {"id": unit.id, "error": str(err.cause)}
            return False
        outcome = entry.check_outcome
        if outcome is not None:
            result.checks[unit.id] = str(outcome.get("outcome"))
        if entry.state is State.CHECK_FAILED or (outcome is not None and outcome.get("outcome") == "mark_applied"):
            result.skip([unit], f"its preconditions said {outcome.get('outcome') if outcome else 'no'}: nothing ran")
            return True
        result.done.append(unit.id)
        return True

    # -- approval (SPEC §14) ------------------------------------------------------------------

    def pending(
        self, units: Iterable[ChangeUnit], decisions: Mapping[str, Decision], until: str | None = None
    ) -> list[ChangeUnit]:
        """The units of ``units`` this run would apply: decided apply (not a reconcile), ``when:`` not false.

        Stops after ``until``. A ``when:`` that cannot be evaluated counts as true (its task fails on it).
        """
        stages = {s.name: s for s in self.pipeline.stages}
        out: list[ChangeUnit] = []
        for unit in units:
            decision = decisions.get(unit.id)
            stage = stages[unit.stage]
            if (
                decision is not None
                and decision.action is NextAction.APPLY
                and not decision.reconcile
                and self._condition_or_true(stage.when, f"{stage.folder}/stage.yaml")
                and self._condition_or_true(unit.when, unit.source_file)
            ):
                out.append(unit)
            if unit.id == until:
                break
        return out

    @property
    def asks_approval(self) -> bool:
        """False when the pipeline never asks (``approval.required: never``): nothing to check."""
        return self.pipeline.approval.required is not ApprovalRequired.NEVER

    def gated(self, units: Iterable[ChangeUnit]) -> list[Gated]:
        """The units of ``units`` (to apply or undo) that need approval under the pipeline's ``approval:``."""
        return gated_units(self.pipeline.approval, units, self.executor.risk)

    def require_approval(self, units: Iterable[ChangeUnit], action: str = "apply") -> None:
        """Refuse the run before any unit runs when ``units`` need approval and this run carries none."""
        if self.executor.run.approved_by is not None:
            return
        gated = self.gated(units)
        if gated:
            pairs = [(g.unit_id, g.risk) for g in gated]
            raise ApprovalRequiredError(self.pipeline.id, self.pipeline.approval.required.value, action, pairs)

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

    def compensate(
        self, scope: OnFailure | None = None, *, stage: str | None = None, snapshot: Snapshot | None = None
    ) -> list[str]:
        """Roll back this execution's failed unit and its ``scope`` (default ``on_failure``), newest first.

        ``stage``: only a failure in that stage (Airflow runs one rollback task per stage). Reads the
        audit state once; does nothing when no unit of this execution failed there.
        """
        latest = self.snapshot() if snapshot is None else snapshot
        mine = self._mine(latest)
        failed = next(
            (
                self.pipeline.unit(cid)
                for cid, e in mine.items()
                if e.state is State.FAILED and (stage is None or e.stage == stage)
            ),
            None,
        )
        if failed is None:
            return []
        rolled: list[str] = []
        for unit in reversed(self._scope(scope or self.pipeline.on_failure, failed, mine, stage)):
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

    def _scope(self, scope: OnFailure, failed: ChangeUnit, mine: Snapshot, stage: str | None) -> list[ChangeUnit]:
        def candidate(u: ChangeUnit) -> bool:
            entry = mine.get(u.id)
            if entry is None or not (entry.state in APPLIED_STATES or u.id == failed.id):
                return False
            # Another stage's failure of this run is its own rollback task's to compensate.
            return not (entry.state is State.FAILED and stage is not None and entry.stage != stage)

        candidates = [u for u in self.pipeline.units if candidate(u)]
        if scope is OnFailure.ROLLBACK_FAILED:
            return [failed]
        if scope is OnFailure.ROLLBACK_STAGE:
            return [u for u in candidates if u.stage == failed.stage]
        return candidates

    def _mine(self, snapshot: Snapshot) -> dict[str, AuditEntry]:
        execution = self.executor.run.execution_id
        return {cid: e for cid, e in snapshot.items() if e.execution_id == execution}

    def failures_of_this_run(self, snapshot: Snapshot, stage: str | None = None) -> list[str]:
        """Units this execution left FAILED or STARTED (in ``stage``, when given)."""
        return [
            cid
            for cid, e in self._mine(snapshot).items()
            if e.state in (State.FAILED, State.STARTED) and (stage is None or e.stage == stage)
        ]

    def recover(self, stage: str | None = None, interrupted: type[BaseException] = RuntimeError) -> Recovered:
        """Close what this execution left STARTED (its worker died), then compensate its failure in ``stage``."""
        snapshot = self.snapshot()
        started = [cid for cid, e in self._mine(snapshot).items() if e.state is State.STARTED]
        for cid in started:
            if stage is None or snapshot[cid].stage == stage:
                self.record_interrupted(self.pipeline.unit(cid), interrupted(f"the task of {cid} died while STARTED"))
        if started:
            snapshot = self.snapshot()
        failed = [
            cid for cid, e in self._mine(snapshot).items() if e.state is State.FAILED and stage in (None, e.stage)
        ]
        rolled = self.compensate(stage=stage, snapshot=snapshot)
        broken = [cid for cid, e in self._mine(self.snapshot()).items() if e.state is State.ROLLBACK_FAILED]
        return Recovered(failed, rolled, broken)

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
        if decide(unit, latest, markers=self._markers()).reconcile:
            return self.executor.reconcile(unit, latest)
        return self.executor.record(unit, State.FAILED, latest.action, strategy=strategy, error=error)

    # -- undo -------------------------------------------------------------------------------

    def undo_targets(
        self,
        to: str | None = None,
        last: int | None = None,
        *,
        live_token: int | None = None,
        snapshot: Snapshot | None = None,
    ) -> list[ChangeUnit]:
        """Units an undo rolls back, newest first. Raises before anything changes when one can't be.

        ``live_token``: the live holder's token when called without the lease (to check arguments early).
        """
        return self._undo_plan(self.snapshot() if snapshot is None else snapshot, to, last, live_token)

    def _undo_plan(
        self, latest: Snapshot, to: str | None, last: int | None, live_token: int | None = None
    ) -> list[ChangeUnit]:
        if (to is None) == (last is None):
            raise UsageError("undo needs exactly one target: the change id to undo to, or how many changes to undo")
        units = list(self.pipeline.units)
        if to is not None:
            after = units[self.require_unit(to, "undo to") + 1 :]
        else:
            if last is None or last < 1:
                raise UsageError(f"the number of changes to undo must be a positive number, got {last}")
            applied = [u for u in units if u.id in latest and latest[u.id].state in APPLIED_STATES]
            after = applied[-last:]
        self._check_undoable(after, latest, live_token)
        return [u for u in reversed(after) if u.id in latest and latest[u.id].state in APPLIED_STATES]

    def _check_undoable(self, units: Sequence[ChangeUnit], latest: Snapshot, live_token: int | None) -> None:
        for unit in units:
            entry = latest.get(unit.id)
            if entry is None or entry.state in ROLLED_BACK_STATES:
                continue
            if entry.state in APPLIED_STATES:
                if not self.executor.can_roll_back(unit):
                    raise UsageError(
                        f"change {unit.id!r} ({unit.source_file}) has no rollback, so nothing was undone; "
                        f"add 'rollback:' (or def rollback) to it, or undo to a later change"
                    )
                continue
            if live_token is not None and entry.state is State.STARTED and entry.lock_token == live_token:
                continue  # running now under the live lease: checked again once the undo holds the lease
            reason = f"its last attempt ended {entry.state.value}; resolve it before undo"
            resolution = Resolution(State.MANUAL_MARKED_AS_ROLLED_BACK)
            raise blocked_error(
                self.pipeline_dir, Decision(unit, entry, NextAction.BLOCKED, reason, resolution), self.pipeline.member
            )

    def undo(self, to: str | None = None, last: int | None = None, *, stage: str | None = None) -> RunResult:
        """Roll back applied units after ``to`` (or the last ``last``), newest first; stop at a failure.

        ``stage``: only that stage's share of the undo (Airflow runs one undo task per stage, newest
        stage first); the whole undo is still checked before anything changes.
        """
        result = RunResult(self.pipeline.id, kind=RunKind.UNDO)
        latest = self.snapshot()
        units = self._undo_plan(latest, to, last)
        self.require_approval(units, "undo")  # the whole undo, also when this task does one stage of it
        for unit in units:
            if stage is not None and unit.stage != stage:
                continue
            try:
                self.executor.rollback(unit, latest[unit.id], Action.UNDO)
            except UnitExecutionError as err:
                result.failed = {"id": unit.id, "error": str(err.cause)}
                break
            result.done.append(unit.id)
        return result

    # -- fix --------------------------------------------------------------------------------

    def refuse_running(self, unit_id: str, snapshot: Snapshot, holder: LeaseInfo | None) -> None:
        """Raise :class:`ChangeRunningError` when ``unit_id`` is being applied by the live lease holder.

        ``snapshot`` must be read before ``holder`` (:meth:`Workspace.observe`).
        """
        self.require_unit(unit_id, "fix")
        unit = self.pipeline.unit(unit_id)
        live = holder.token if holder else None
        if decide(unit, snapshot.get(unit_id), live_token=live).action is NextAction.RUNNING:
            raise ChangeRunningError(unit_id, holder.owner if holder else None)

    def fix(self, unit_id: str, state: State, accept_checksum: bool = False) -> AuditEntry:
        """Record ``state`` (marked applied or rolled back by hand, after checking the target) for a unit."""
        if state not in FIX_STATES:
            raise UsageError(f"a fix records {' or '.join(sorted(s.value for s in FIX_STATES))}, not {state.value}")
        self.require_unit(unit_id, "fix")
        unit = self.pipeline.unit(unit_id)
        latest = self.snapshot().get(unit_id)
        marks_drift = latest is not None and latest.state in APPLIED_STATES and drifted(unit, latest)
        if state is State.MANUAL_MARKED_AS_APPLIED and marks_drift and not accept_checksum:
            raise DriftNotAcceptedError(unit_id, unit.source_file, self.pipeline_dir)
        return self.executor.record(unit, state, Action.FIX)

    def require_unit(self, unit_id: str, what: str) -> int:
        """Return the position of ``unit_id`` in run order; a :class:`UsageError` naming ``what`` when unknown."""
        ids = [u.id for u in self.pipeline.units]
        if unit_id not in ids:
            raise UsageError(
                f"{what} {unit_id!r}: no such change in pipeline {self.pipeline.id!r}{did_you_mean(unit_id, ids)}"
            )
        return ids.index(unit_id)
