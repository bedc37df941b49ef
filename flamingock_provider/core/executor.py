"""Run one change unit's apply or rollback under its transaction strategy, auditing every step.

The only place that talks to targets. Order of events per strategy (SPEC §8):

- NON_TX:      STARTED → apply → APPLIED | FAILED
- TX_SEPARATE: STARTED → begin → apply → marker → commit → APPLIED | rollback → FAILED
- TX_SHARED:   begin → STARTED → apply → APPLIED → commit (one transaction) | rollback → FAILED
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flamingock_provider.core.audit import MAX_ERROR_BYTES, AuditStore, truncate_utf8
from flamingock_provider.core.context import ChangeContext, StringRenderer
from flamingock_provider.core.lease import Lease
from flamingock_provider.core.model import (
    Action,
    AuditEntry,
    ChangeUnit,
    ErrorInfo,
    Pipeline,
    State,
    Step,
    TxStrategy,
)
from flamingock_provider.core.targets import TargetFactory, TargetSession
from flamingock_provider.core.template import get_template
from flamingock_provider.exceptions import ConfigurationError, LeaseLostError, UnitExecutionError


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


class StepFailure(Exception):
    """Apply failed at step ``index`` after ``done`` undo states were recorded."""

    def __init__(self, index: int, done: list[Any], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.index = index
        self.done = done
        self.cause = cause


def error_info(err: BaseException) -> ErrorInfo:
    cause = err.cause if isinstance(err, (StepFailure, UnitExecutionError)) else err
    trace = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    message = truncate_utf8(str(cause), MAX_ERROR_BYTES // 4)
    return ErrorInfo(type(cause).__name__, message, truncate_utf8(trace, MAX_ERROR_BYTES - len(message) - 256))


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
        checksum: str | None = None,
    ) -> AuditEntry:
        """Append one entry under the lease; refuse (LeaseLostError) when the lease is gone."""
        fence = None
        if self.lease is not None:
            self.lease.check()
            fence = self.lease.fence if self._store_fenced else None
        entry = self._entry(unit, state, action, strategy, started, error, undo_state, checksum)
        return self.store.append(entry, fence=fence, tx=tx)

    def _entry(
        self,
        unit: ChangeUnit,
        state: State,
        action: Action,
        strategy: TxStrategy,
        started: float | None,
        error: BaseException | None,
        undo_state: Any,
        checksum: str | None,
    ) -> AuditEntry:
        run = self.run
        target = unit.target or self.pipeline.default_target
        return AuditEntry(
            pipeline=self.pipeline.id,
            stage=unit.stage,
            change_id=unit.id,
            author=unit.author,
            state=state,
            action=action,
            created_at=self._now(),
            execution_id=run.execution_id,
            change_order=unit.order,
            change_type=unit.change_type,
            source_file=unit.source_file,
            checksum=checksum or unit.checksum,
            payload_checksum=unit.payload_checksum,
            target=target,
            transactional=strategy is not TxStrategy.NON_TX,
            tx_strategy=strategy,
            recovery=unit.recovery,
            execution_ms=None if started is None else int((time.monotonic() - started) * 1000),
            error=None if error is None else error_info(error),
            lock_token=self.lease.token if self.lease else None,
            dag_id=run.dag_id,
            run_id=run.run_id,
            task_id=run.task_id,
            try_number=run.try_number,
            triggered_by=run.triggered_by,
            hostname=run.hostname,
            metadata=dict(self.pipeline.metadata),
            undo_state=undo_state,
        )

    # -- apply ------------------------------------------------------------------------------

    def apply(self, unit: ChangeUnit) -> AuditEntry:
        """Apply ``unit``; return its APPLIED entry or raise UnitExecutionError after recording FAILED."""
        session, shared = self._open(unit)
        try:
            self._guard_target()
            strategy = self.strategy(unit, session, shared)
            if strategy is TxStrategy.TX_SHARED:
                return self._apply_shared(unit, session)
            if strategy is TxStrategy.TX_SEPARATE:
                return self._apply_separate(unit, session)
            return self._apply_non_tx(unit, session)
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
        if unit.kind == "python":  # an aws session's boto3 calls cannot join its transaction
            return bool(getattr(session, "python_transactions", True))
        template = get_template(unit.template or "")
        return all(template.is_transactional(step.apply) for step in unit.steps)

    def _apply_non_tx(self, unit: ChangeUnit, session: TargetSession | None) -> AuditEntry:
        started = time.monotonic()
        self.record(unit, State.STARTED, Action.APPLY)
        try:
            with self._heartbeat():
                undo = self._run_steps(unit, session)
        except StepFailure as failure:
            self._record_failure(unit, failure, TxStrategy.NON_TX, started)
            raise UnitExecutionError(unit.id, "apply", failure.cause) from failure.cause
        return self.record(unit, State.APPLIED, Action.APPLY, started=started, undo_state=undo)

    def _apply_separate(self, unit: ChangeUnit, session: TargetSession | None) -> AuditEntry:
        assert session is not None
        started = time.monotonic()
        strategy = TxStrategy.TX_SEPARATE
        self.record(unit, State.STARTED, Action.APPLY, strategy=strategy)
        try:
            with self._heartbeat():
                session.begin()
                undo = self._run_steps(unit, session)
                session.write_marker(self.pipeline.id, unit.id, self.run.execution_id)
                self._verify_lease()  # the target commit cannot be fenced by the store: ask it
                session.commit()
        except StepFailure as failure:
            _quiet_rollback(session)
            self._record_failure(unit, failure, strategy, started)
            raise UnitExecutionError(unit.id, "apply", failure.cause) from failure.cause
        except BaseException:
            _quiet_rollback(session)
            raise
        return self.record(unit, State.APPLIED, Action.APPLY, strategy=strategy, started=started, undo_state=undo)

    def _apply_shared(self, unit: ChangeUnit, session: TargetSession | None) -> AuditEntry:
        assert session is not None
        started = time.monotonic()
        strategy = TxStrategy.TX_SHARED
        try:
            with self._heartbeat():
                session.begin()
                self.record(unit, State.STARTED, Action.APPLY, strategy=strategy, tx=session)
                undo = self._run_steps(unit, session)
                entry = self.record(
                    unit,
                    State.APPLIED,
                    Action.APPLY,
                    strategy=strategy,
                    started=started,
                    undo_state=undo,
                    tx=session,
                )
                session.commit()
        except StepFailure as failure:
            _quiet_rollback(session)
            self._record_failure(unit, failure, strategy, started)
            raise UnitExecutionError(unit.id, "apply", failure.cause) from failure.cause
        except BaseException:
            _quiet_rollback(session)
            raise
        return entry

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
        if unit.kind == "python":
            try:
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

    # -- rollback ---------------------------------------------------------------------------

    def can_roll_back(self, unit: ChangeUnit) -> bool:
        if unit.kind == "python":
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
        transactional = strategy is not TxStrategy.NON_TX
        started = time.monotonic()
        if not transactional and previous.state is not State.FAILED:
            self.record(unit, State.STARTED, action, strategy=strategy)
        tx = session if strategy is TxStrategy.TX_SHARED else None
        try:
            with self._heartbeat():
                if transactional and session is not None:
                    session.begin()
                self._run_rollback_steps(unit, previous, session)
                if transactional and session is not None:
                    entry = self.record(unit, State.ROLLED_BACK, action, strategy=strategy, started=started, tx=tx)
                    session.commit()
                    return entry
        except StepFailure as failure:
            if transactional and session is not None:
                _quiet_rollback(session)
            self.record(unit, State.ROLLBACK_FAILED, action, strategy=strategy, started=started, error=failure)
            raise UnitExecutionError(unit.id, "rollback", failure.cause) from failure.cause
        except BaseException:
            if transactional and session is not None:
                _quiet_rollback(session)
            raise
        return self.record(unit, State.ROLLED_BACK, action, strategy=strategy, started=started)

    def _run_rollback_steps(self, unit: ChangeUnit, previous: AuditEntry, session: TargetSession | None) -> None:
        ctx = self.context(unit, session)
        if unit.kind == "python":
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
        return self.lease is not None and self.lease.backend is self.store

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

    def _heartbeat(self) -> Any:
        from contextlib import nullcontext

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


def _quiet_rollback(session: TargetSession) -> None:
    try:
        session.rollback()
    except Exception:
        logging.getLogger("flamingock").warning("rolling back the target transaction failed", exc_info=True)
