"""Run one change unit's apply or rollback under its transaction strategy, auditing every step.

The only place that talks to targets. Order of events per strategy (SPEC §8):

- NON_TX:      STARTED → apply → APPLIED | FAILED
- TX_SEPARATE: STARTED → begin → apply → marker → commit → APPLIED → marker deleted | rollback → FAILED
- TX_SHARED:   begin → STARTED → apply → APPLIED → commit (one transaction) | rollback → FAILED
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timezone
from typing import Any, cast

from flamingock_provider.core.audit import AuditStore, RunInfo, build_entry
from flamingock_provider.core.checks import (
    DEFAULT_TIMEOUT_S as DEFAULT_CHECK_TIMEOUT_S,
)
from flamingock_provider.core.checks import (
    CheckEvaluator,
    CheckOutcome,
    Observation,
    bounded,
    run_checks,
)
from flamingock_provider.core.context import ChangeContext, StringRenderer
from flamingock_provider.core.lease import Lease
from flamingock_provider.core.model import (
    Action,
    AuditEntry,
    ChangeUnit,
    CheckSpec,
    Pipeline,
    State,
    Step,
    TargetConfig,
    TxStrategy,
    UnitKind,
)
from flamingock_provider.core.sinks import Sink, emit
from flamingock_provider.core.targets import TargetFactory, TargetSession
from flamingock_provider.core.template import get_template
from flamingock_provider.exceptions import (
    CheckFailedError,
    ConfigurationError,
    FlamingockError,
    LeaseLostError,
    StoreError,
    UnitExecutionError,
)


class StepFailure(Exception):
    """Apply failed at step ``index`` after ``done`` undo states were recorded."""

    def __init__(self, index: int, done: list[Any], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.index = index
        self.done = done
        self.cause = cause


class UnitExecutor:
    """Applies and rolls back single units against their targets; writes their audit entries."""

    def __init__(
        self,
        pipeline: Pipeline,
        store: AuditStore,
        targets: TargetFactory,
        run: RunInfo,
        *,
        lease: Lease | None = None,
        renderer: StringRenderer | None = None,
        log: logging.Logger | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        sinks: Sequence[Sink] = (),
        checks: CheckEvaluator | None = None,
        risk_of: Callable[[ChangeUnit], str | None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.targets = targets
        self.run = run
        self.lease = lease
        self.renderer = renderer
        self.log = log or logging.getLogger("flamingock")
        self._now = now
        self._modules: dict[str, Any] = {}
        self.sinks = list(sinks)
        self._pending: list[AuditEntry] = []
        self.checks = checks
        self.risk_of = risk_of
        self._outcomes: dict[str, Mapping[str, Any]] = {}  # unit id -> its check outcome, while it runs
        self._risks: dict[str, str | None] = {}

    # -- audit ------------------------------------------------------------------------------

    def record(
        self,
        unit: ChangeUnit,
        state: State,
        action: Action,
        *,
        strategy: TxStrategy = TxStrategy.NON_TX,
        started: float | None = None,
        error: BaseException | None = None,
        undo_state: Any = None,
        tx: TargetSession | None = None,
    ) -> AuditEntry:
        """Append one entry under the lease; refuse (LeaseLostError) when the lease is gone.

        Entries written inside a shared transaction reach the sinks only once it commits.
        """
        fence = None
        if self.lease is not None:
            self.lease.check()
            fence = self.lease.fence if self._store_fenced else None
        entry = build_entry(
            self.pipeline,
            unit,
            self.run,
            state,
            action,
            strategy=strategy,
            execution_ms=None if started is None else int((time.monotonic() - started) * 1000),
            error=error,
            undo_state=undo_state,
            lock_token=self.lease.token if self.lease else None,
            created_at=self._now(),
            risk=self.risk(unit),
            check_outcome=self._outcomes.get(unit.id) if action is Action.APPLY else None,
        )
        stored = self.store.append(entry, fence=fence, tx=tx)
        if tx is None:
            emit(self.sinks, stored)
        else:
            self._pending.append(stored)
        return stored

    def _abort(self, session: TargetSession) -> None:
        """Roll a target transaction back; its shared entries were never written."""
        self._pending.clear()
        try:
            session.rollback()
        except Exception:
            self.log.warning("rolling back the target transaction failed", exc_info=True)

    def _committed(self, session: TargetSession) -> None:
        """Commit a shared transaction, then hand its entries to the sinks."""
        session.commit()
        pending, self._pending = self._pending, []
        for entry in pending:
            emit(self.sinks, entry)

    # -- apply ------------------------------------------------------------------------------

    def apply(self, unit: ChangeUnit) -> AuditEntry:
        """Apply ``unit``; return its APPLIED entry or raise UnitExecutionError after recording FAILED.

        Its preconditions run first (SPEC §14): a ``skip`` returns the CHECK_FAILED entry, a
        ``mark_applied`` the APPLIED one, without running the unit; ``halt`` raises CheckFailedError.
        """
        if unit.has_preconditions:
            outcome = self.preconditions(unit)
            self._outcomes[unit.id] = outcome.to_json()
            try:
                if not outcome.runs_unit:
                    return self._check_said_no(unit, outcome)
                if outcome.decision == "warn":
                    self.log.warning("%s", outcome.message)
                return self._apply(unit)
            finally:
                self._outcomes.pop(unit.id, None)
        return self._apply(unit)

    def _apply(self, unit: ChangeUnit) -> AuditEntry:
        session, shared = self._open(unit)
        try:
            self._guard_target()
            return self._apply_in(unit, session, self.strategy(unit, session, shared))
        finally:
            if session is not None and not shared:
                session.close()

    def strategy(self, unit: ChangeUnit, session: TargetSession | None, shared: bool) -> TxStrategy:
        if unit.transactional is False or session is None:
            return TxStrategy.NON_TX
        capable = session.supports_transactions and self._operations_transactional(unit, session)
        if not capable:
            if unit.transactional:
                raise ConfigurationError(
                    f"{unit.source_file}: field 'transactional': target {session.config.name!r} or template "
                    f"{unit.change_type!r} cannot run in a transaction; remove 'transactional: true'"
                )
            return TxStrategy.NON_TX
        return TxStrategy.TX_SHARED if shared else TxStrategy.TX_SEPARATE

    def _operations_transactional(self, unit: ChangeUnit, session: TargetSession) -> bool:
        if unit.kind is UnitKind.PYTHON:  # an aws session's boto3 calls cannot join its transaction
            return bool(getattr(session, "python_transactions", True))
        template = get_template(unit.template or "")
        return all(template.is_transactional_on(step.apply, session, self.pipeline.path) for step in unit.steps)

    def _apply_in(self, unit: ChangeUnit, session: TargetSession | None, strategy: TxStrategy) -> AuditEntry:
        """The one apply sequence of SPEC §8, whatever the strategy.

        NON_TX: STARTED, apply, APPLIED. TX_SEPARATE: STARTED, then apply + marker in the target's
        transaction, then APPLIED. TX_SHARED: STARTED, apply and APPLIED all in one transaction.
        """
        started = time.monotonic()
        shared = session if strategy is TxStrategy.TX_SHARED else None
        if shared is None:
            self.record(unit, State.STARTED, Action.APPLY, strategy=strategy)
        try:
            with self._heartbeat(), self._transaction(session, strategy):
                if shared is not None:
                    self.record(unit, State.STARTED, Action.APPLY, strategy=strategy, tx=shared)
                undo = self._run_steps(unit, session)
                if strategy is TxStrategy.TX_SEPARATE:
                    assert session is not None
                    self._check_lease()  # a runner paused inside the unit writes no marker once its lease may be gone
                    self._write_marker(unit, session)
                    self._verify_lease()  # the target commit cannot be fenced by the store: ask it
                if shared is not None:  # APPLIED commits with the change
                    return self.record(
                        unit,
                        State.APPLIED,
                        Action.APPLY,
                        strategy=strategy,
                        started=started,
                        undo_state=undo,
                        tx=shared,
                    )
        except StepFailure as failure:
            self._record_failure(unit, failure, strategy, started)
            raise UnitExecutionError(unit.id, "apply", failure.cause) from failure.cause
        # Only once the target committed (TX_SEPARATE) or the change is done (NON_TX).
        entry = self.record(unit, State.APPLIED, Action.APPLY, strategy=strategy, started=started, undo_state=undo)
        if strategy is TxStrategy.TX_SEPARATE:
            assert session is not None
            self._clear_marker(unit, session, self.run.execution_id)
        return entry

    def reconcile(self, unit: ChangeUnit, started: AuditEntry) -> AuditEntry:
        """Record APPLIED for a TX_SEPARATE unit whose marker shows its commit (SPEC §7), then delete the marker."""
        entry = self.record(unit, State.APPLIED, started.action, strategy=started.tx_strategy)
        config = self.pipeline.target_of(unit)
        if config is not None:
            session = self.targets(config)
            try:
                self._clear_marker(unit, session, started.execution_id)
            finally:
                session.close()
        return entry

    def _clear_marker(self, unit: ChangeUnit, session: TargetSession, execution_id: str) -> None:
        """Delete the marker once APPLIED is durable; one left behind is only read for a STARTED entry."""
        try:
            session.clear_marker(self.pipeline.id, unit.id, execution_id)
        except Exception as err:
            self.log.warning(
                "change %s: its marker in target %s was not deleted (%s: %s); it is harmless and may be deleted by hand",
                unit.id,
                session.config.name,
                type(err).__name__,
                err,
            )

    @contextmanager
    def _transaction(self, session: TargetSession | None, strategy: TxStrategy) -> Iterator[None]:
        """Begin the target's transaction (unless NON_TX); commit when the block ends, abort on any error.

        The one begin / commit / abort sequence: entries written inside a shared transaction reach the
        sinks only once it commits, and are discarded with it.
        """
        if strategy is TxStrategy.NON_TX or session is None:
            yield
            return
        session.begin()
        try:
            yield
            self._committed(session)
        except BaseException:
            self._abort(session)
            raise

    def _write_marker(self, unit: ChangeUnit, session: TargetSession) -> None:
        try:
            session.write_marker(self.pipeline.audit_key, unit.id, self.run.execution_id)
        except FlamingockError:
            raise
        except Exception as err:  # e.g. a write conflict on the marker table: the transaction is rolled back
            raise StoreError(
                f"change {unit.id!r}: writing its marker in target {session.config.name!r} failed: "
                f"{type(err).__name__}: {err}; its transaction was rolled back, nothing committed: run again"
            ) from err

    def _record_failure(self, unit: ChangeUnit, failure: StepFailure, strategy: TxStrategy, started: float) -> None:
        undo = {"failed_step": failure.index, "done": failure.done}
        self.record(
            unit,
            State.FAILED,
            Action.APPLY,
            strategy=strategy,
            started=started,
            error=failure,
            undo_state=undo,
        )
        self.log.error("change %s failed: %s", unit.id, failure.cause)

    def _run_steps(self, unit: ChangeUnit, session: TargetSession | None) -> Any:
        ctx = self.context(unit, session)
        if unit.kind is UnitKind.PYTHON:
            try:
                # As before each template step: a runner paused since its STARTED entry (GC, SIGSTOP)
                # must not run the unit's code once its lease may be gone.
                self._check_lease()
                self._module(unit).apply(ctx)
            except LeaseLostError:
                raise
            except Exception as err:
                raise StepFailure(0, [], err) from err
            return None
        template = get_template(unit.template or "")
        done: list[Any] = []
        for index, step in enumerate(unit.steps):
            try:
                self._check_lease()
                done.append(template.apply(ctx, ctx.render(step.apply)))
            except LeaseLostError:
                raise
            except Exception as err:
                raise StepFailure(index, done, err) from err
        return done

    # -- preconditions ----------------------------------------------------------------------

    def preconditions(self, unit: ChangeUnit) -> CheckOutcome:
        """Evaluate the unit's checks (and a Python unit's check(ctx)) under the lease, each time-bounded."""
        if self.checks is None:
            raise ConfigurationError(
                f"change {unit.id!r} has preconditions, but this runner was built without a check evaluator"
            )
        self._guard_target()
        python = self._python_check(unit) if unit.has_check else None
        with self._heartbeat():
            return run_checks(unit, lambda check: self._evaluate(unit, check), python)

    def _evaluate(self, unit: ChangeUnit, check: CheckSpec) -> Observation:
        assert self.checks is not None
        evaluator = self.checks
        config = self.pipeline.targets.get(check.target) if check.target else self.pipeline.target_of(unit)
        if config is None:
            raise ConfigurationError(f"change {unit.id!r}: precondition {check.label} has no target; set 'target:'")
        what = f"change {unit.id!r}: precondition {check.label}"

        def evaluate(session: TargetSession | None) -> Observation:
            assert session is not None  # a check always has a target (config above)
            return evaluator.evaluate(check, session)

        return cast(Observation, self._in_session(config, evaluate, check.timeout_seconds, what))

    def _python_check(self, unit: ChangeUnit) -> Callable[[], Any]:
        module = self._module(unit)  # imported here, not in the worker thread
        config = self.pipeline.target_of(unit)
        what = f"change {unit.id!r}: check(ctx)"
        return lambda: self._in_session(
            config, lambda s: module.check(self.context(unit, s)), DEFAULT_CHECK_TIMEOUT_S, what
        )

    def _in_session(
        self, config: TargetConfig | None, call: Callable[[TargetSession | None], Any], timeout: float, what: str
    ) -> Any:
        """Run ``call`` on a session opened in a worker thread, cut off (and cancelled) after ``timeout``."""
        opened: list[TargetSession] = []

        def run() -> Any:
            session = self.targets(config) if config is not None else None
            if session is not None:
                opened.append(session)
            try:
                return call(session)
            finally:
                if session is not None:
                    session.close()

        def cancel() -> None:
            if opened and self.checks is not None:
                self.checks.cancel(opened[0])

        return bounded(run, timeout, what, cancel)

    def _check_said_no(self, unit: ChangeUnit, outcome: CheckOutcome) -> AuditEntry:
        state = outcome.state or State.CHECK_FAILED
        entry = self.record(unit, state, Action.APPLY)
        if outcome.decision in ("halt", "error"):
            self.log.error("%s", outcome.message)
            raise CheckFailedError(unit.id, outcome.message, outcome.to_json())
        self.log.warning("%s", outcome.message)
        return entry

    def risk(self, unit: ChangeUnit) -> str | None:
        """The unit's risk level for its audit entries, analysed once per unit and run."""
        if self.risk_of is None:
            return None
        if unit.id not in self._risks:
            try:
                self._risks[unit.id] = self.risk_of(unit)
            except Exception:  # the risk label must never stop an audit write
                self.log.debug("risk of %s not computed", unit.id, exc_info=True)
                self._risks[unit.id] = None
        return self._risks[unit.id]

    # -- rollback ---------------------------------------------------------------------------

    def can_roll_back(self, unit: ChangeUnit) -> bool:
        if unit.kind is UnitKind.PYTHON:
            return unit.has_rollback
        template = get_template(unit.template or "")
        return all(s.rollback is not None or template.derives_rollback(s.apply) for s in unit.steps)

    def rollback(self, unit: ChangeUnit, previous: AuditEntry, action: Action) -> AuditEntry:
        """Roll back what ``previous`` (APPLIED or FAILED) left; record ROLLED_BACK or ROLLBACK_FAILED."""
        session, shared = self._open(unit)
        try:
            self._guard_target()
            return self._rollback_in(unit, previous, action, session, shared)
        finally:
            if session is not None and not shared:
                session.close()

    def _rollback_in(
        self,
        unit: ChangeUnit,
        previous: AuditEntry,
        action: Action,
        session: TargetSession | None,
        shared: bool,
    ) -> AuditEntry:
        strategy = self.strategy(unit, session, shared) if session is not None else TxStrategy.NON_TX
        started = time.monotonic()
        if strategy is TxStrategy.NON_TX and previous.state is not State.FAILED:
            self.record(unit, State.STARTED, action, strategy=strategy)
        tx = session if strategy is TxStrategy.TX_SHARED else None
        try:
            with self._heartbeat(), self._transaction(session, strategy):
                self._run_rollback_steps(unit, previous, session)
                if tx is not None:  # ROLLED_BACK commits with the rollback
                    return self.record(unit, State.ROLLED_BACK, action, strategy=strategy, started=started, tx=tx)
        except StepFailure as failure:
            self.record(unit, State.ROLLBACK_FAILED, action, strategy=strategy, started=started, error=failure)
            raise UnitExecutionError(unit.id, "rollback", failure.cause) from failure.cause
        return self.record(unit, State.ROLLED_BACK, action, strategy=strategy, started=started)

    def _run_rollback_steps(self, unit: ChangeUnit, previous: AuditEntry, session: TargetSession | None) -> None:
        ctx = self.context(unit, session)
        if unit.kind is UnitKind.PYTHON:
            self._check_lease()
            try:
                self._module(unit).rollback(ctx)
            except Exception as err:
                raise StepFailure(0, [], err) from err
            return
        template = get_template(unit.template or "")
        for index, step, state in reversed(_steps_to_undo(unit.steps, previous)):
            try:
                self._check_lease()
                rollback = ctx.render(step.rollback) if step.rollback is not None else None
                template.rollback(ctx, ctx.render(step.apply), rollback, state)
            except LeaseLostError:
                raise
            except Exception as err:
                raise StepFailure(index, [], err) from err

    # -- helpers ----------------------------------------------------------------------------

    def context(self, unit: ChangeUnit, session: TargetSession | None) -> ChangeContext:
        return ChangeContext(
            change=unit,
            pipeline=self.pipeline,
            run_id=self.run.run_id,
            execution_id=self.run.execution_id,
            params=self.run.params,
            log=self.log,
            target_session=session,
            renderer=self.renderer,
        )

    def _open(self, unit: ChangeUnit) -> tuple[TargetSession | None, bool]:
        config = self.pipeline.target_of(unit)
        if config is None:
            return None, False
        shared = self.store.shared_target(config) if unit.transactional is not False else None
        if shared is not None:
            return shared, True
        return self.targets(config), False

    def _module(self, unit: ChangeUnit) -> Any:
        from flamingock_provider.core.python_unit import load_unit_module

        if unit.id not in self._modules:
            self._modules[unit.id] = load_unit_module(self.pipeline, unit)
        return self._modules[unit.id]

    @property
    def _store_fenced(self) -> bool:
        """True when the audit store keeps the lease, so every append is conditional on holding it."""
        return self.lease is not None and cast(object, self.lease.backend) is cast(object, self.store)

    def _guard_target(self) -> None:
        """Before touching a target: extend when due, and make sure the lease is still ours."""
        if self.lease is None:
            return
        self.lease.refresh()
        if not self._store_fenced:
            self.lease.verify()

    def _check_lease(self) -> None:
        if self.lease is not None:
            self.lease.check()

    def _verify_lease(self) -> None:
        if self.lease is not None:
            self.lease.verify()

    def _heartbeat(self) -> AbstractContextManager[None]:
        return self.lease.heartbeat() if self.lease is not None else nullcontext()


def _steps_to_undo(steps: Sequence[Step], previous: AuditEntry) -> list[tuple[int, Step, Any]]:
    """Which steps a rollback undoes: all of an APPLIED unit; of a FAILED one, what its entry says."""
    state = previous.undo_state
    if previous.state is State.FAILED:
        done = list(state.get("done", [])) if isinstance(state, Mapping) else []
        failed = int(state.get("failed_step", 0)) if isinstance(state, Mapping) else 0
        if len(steps) == 1:  # a plain apply/rollback unit: its rollback cleans up a partial apply
            return [(0, steps[0], None)]
        return [(i, steps[i], done[i] if i < len(done) else None) for i in range(failed)]
    states = state if isinstance(state, list) else []
    return [(i, step, states[i] if i < len(states) else None) for i, step in enumerate(steps)]
