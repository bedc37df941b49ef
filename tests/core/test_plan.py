"""Every row of SPEC §7, decided from one audit snapshot."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from flamingock_provider.commandline import blocked_report
from flamingock_provider.core.model import (
    Action,
    AuditEntry,
    ChangeUnit,
    NextAction,
    Pipeline,
    Recovery,
    Stage,
    State,
    Step,
    TxStrategy,
    UnitKind,
)
from flamingock_provider.core.plan import (
    ACTION_RULES,
    Decision,
    action_rule,
    decide,
    first_blocked,
    hinted_done,
    plan_pipeline,
    run_skips,
)


def unit(
    uid: str = "u1",
    *,
    checksum: str = "c1",
    recovery: Recovery = Recovery.MANUAL_INTERVENTION,
    run_always: bool = False,
) -> ChangeUnit:
    return ChangeUnit(
        id=uid,
        author="a",
        order=1,
        stage="main",
        source_file=f"0001_{uid}.yaml",
        checksum=checksum,
        kind=UnitKind.TEMPLATE,
        template="sql",
        steps=(Step({"statements": "SELECT 1"}),),
        recovery=recovery,
        run_always=run_always,
    )


def entry(
    state: State,
    *,
    tx: TxStrategy = TxStrategy.NON_TX,
    checksum: str = "c1",
    recovery: Recovery = Recovery.MANUAL_INTERVENTION,
    execution: str = "e1",
    token: int | None = None,
) -> AuditEntry:
    return AuditEntry(
        pipeline="p",
        stage="main",
        change_id="u1",
        author="a",
        state=state,
        action=Action.APPLY,
        created_at=datetime.now(timezone.utc),
        execution_id=execution,
        checksum=checksum,
        tx_strategy=tx,
        transactional=tx is not TxStrategy.NON_TX,
        recovery=recovery,
        lock_token=token,
    )


def d(u: ChangeUnit, e: AuditEntry | None, markers=None, live_token: int | None = None) -> Decision:  # type: ignore[no-untyped-def]
    return decide(u, e, markers=markers, live_token=live_token)


def fix_of(decision: Decision) -> dict[str, object]:
    return blocked_report("dags/changes/p", decision)


@pytest.mark.parametrize("state", [None, State.ROLLED_BACK, State.MANUAL_MARKED_AS_ROLLED_BACK])
def test_never_applied_or_rolled_back_applies(state: State | None) -> None:
    assert d(unit(), entry(state) if state else None).action is NextAction.APPLY


@pytest.mark.parametrize("state", [State.APPLIED, State.MANUAL_MARKED_AS_APPLIED])
def test_applied_skips_unless_run_always(state: State) -> None:
    assert d(unit(), entry(state)).action is NextAction.SKIP
    assert d(unit(run_always=True), entry(state)).action is NextAction.APPLY


@pytest.mark.parametrize("tx", [TxStrategy.TX_SEPARATE, TxStrategy.TX_SHARED])
def test_failed_transactional_attempt_applies(tx: TxStrategy) -> None:
    assert d(unit(), entry(State.FAILED, tx=tx)).action is NextAction.APPLY


def test_started_tx_separate_marker_decides() -> None:
    started = entry(State.STARTED, tx=TxStrategy.TX_SEPARATE, execution="run-9")
    seen: list[str] = []

    def present(u: ChangeUnit, e: AuditEntry) -> bool:
        seen.append(e.execution_id)
        return True

    reconciled = d(unit(), started, markers=present)
    assert reconciled.action is NextAction.SKIP and reconciled.reconcile and seen == ["run-9"]
    absent = d(unit(), started, markers=lambda u, e: False)
    assert absent.action is NextAction.APPLY and not absent.reconcile


@pytest.mark.parametrize(
    "latest",
    [
        entry(State.STARTED),
        entry(State.FAILED),
        entry(State.ROLLBACK_FAILED),
    ],
)
def test_unfinished_blocks_under_manual_intervention_and_retries_under_always_retry(
    latest: AuditEntry,
) -> None:
    blocked = d(unit(), latest)
    assert blocked.action is NextAction.BLOCKED
    report = fix_of(blocked)
    assert report["fix"] == "flamingock fix dags/changes/p u1 --as rolled-back"
    assert "manual_intervention" in str(report["reason"]) and "--as applied" in str(report["reason"])
    assert "--" not in blocked.reason  # the core speaks in states; the command line is spelled in one place
    assert d(unit(recovery=Recovery.ALWAYS_RETRY), latest).action is NextAction.APPLY


def test_always_retry_recorded_on_the_entry_also_retries() -> None:
    latest = entry(State.STARTED, recovery=Recovery.ALWAYS_RETRY)
    assert d(unit(), latest).action is NextAction.APPLY


@pytest.mark.parametrize("state", [State.APPLIED, State.MANUAL_MARKED_AS_APPLIED])
def test_checksum_drift_blocks_with_accept_checksum_fix(state: State) -> None:
    drift = d(unit(checksum="new"), entry(state, checksum="old"))
    assert drift.action is NextAction.BLOCKED
    assert fix_of(drift)["fix"] == "flamingock fix dags/changes/p u1 --as applied --accept-checksum"
    assert "drift" in drift.reason


def test_plan_pipeline_uses_one_snapshot_and_finds_first_blocked() -> None:
    units = (unit("u1"), unit("u2"))
    pipeline = Pipeline(id="p", path=Path("/x"), stages=(Stage("main", 0, "", units),))
    snapshot = {"u2": entry(State.FAILED)}
    decisions = plan_pipeline(pipeline, snapshot)
    assert [x.action for x in decisions] == [NextAction.APPLY, NextAction.BLOCKED]
    blocked = first_blocked(decisions)
    assert blocked is not None and blocked.unit.id == "u2"


@pytest.mark.parametrize("tx", list(TxStrategy))
def test_started_by_the_live_lease_holder_is_running_never_blocked(tx: TxStrategy) -> None:
    started = entry(State.STARTED, tx=tx, token=7)
    running = d(unit(), started, markers=lambda u, e: False, live_token=7)
    assert running.action is NextAction.RUNNING and running.resolution is None
    # Another holder (a later token), or none: the entry was left by a runner that is gone.
    assert d(unit(), started, markers=lambda u, e: False, live_token=8).action is not NextAction.RUNNING
    assert d(unit(), started, markers=lambda u, e: False).action is not NextAction.RUNNING


def test_live_token_never_turns_a_finished_entry_into_running() -> None:
    for state in (State.APPLIED, State.FAILED, State.ROLLBACK_FAILED, State.ROLLED_BACK):
        assert d(unit(), entry(state, token=7), live_token=7).action is not NextAction.RUNNING


def test_a_hint_can_only_skip_what_it_found_done() -> None:
    units = (unit("u1"), unit("u2"))
    done = {u.id: Decision(u, None, NextAction.SKIP) for u in units}
    assert hinted_done(units, done)
    assert not hinted_done(units, {**done, "u2": Decision(units[1], None, NextAction.APPLY)})
    assert not hinted_done(units, {"u1": done["u1"]})  # u2 unknown to the hint: decide under the lease
    assert not hinted_done(units, {**done, "u2": Decision(units[1], None, NextAction.SKIP, reconcile=True)})
    assert not hinted_done(units, None) and not hinted_done((), done)


def _stages(**units: list[str]) -> tuple[Stage, ...]:
    return tuple(
        Stage(name, order, name, tuple(unit(uid) for uid in ids)) for order, (name, ids) in enumerate(units.items())
    )


def _decided(stages: tuple[Stage, ...], **actions: NextAction) -> list[Decision]:
    return [Decision(u, None, actions.get(u.id, NextAction.SKIP)) for s in stages for u in s.units]


def test_run_skips_skips_the_idle_units_before_the_first_with_work_and_idle_stages_rollbacks() -> None:
    stages = _stages(schema=["a", "b"], data=["c"], more=["d", "e"])
    skips = run_skips(stages, _decided(stages, c=NextAction.APPLY, e=NextAction.BLOCKED), "apply")
    assert skips.units == {"a", "b"}  # d is idle but after c, which may fail: its task must pass that on
    assert skips.rollbacks == {"schema"}  # data and more run a unit (e is blocked: its task must fail)
    assert skips.undo and skips.undo_stages == {"schema", "data", "more"}  # an apply run undoes nothing
    assert skips.stage_idle(stages[0]) and not skips.stage_idle(stages[2])
    nothing = run_skips(stages, _decided(stages), "apply")
    assert nothing.units == {"a", "b", "c", "d", "e"} and nothing.rollbacks == {"schema", "data", "more"}


def test_run_skips_treats_when_false_as_idle_and_a_reconcile_or_an_undecided_unit_as_work() -> None:
    stages = _stages(schema=["a", "b", "c"])
    decisions = _decided(stages, a=NextAction.APPLY)
    reconcile = Decision(stages[0].units[1], None, NextAction.SKIP, reconcile=True)
    assert run_skips(stages, [decisions[0], reconcile], "apply", inactive={"a"}).units == {"a"}  # b records APPLIED
    assert run_skips(stages, decisions[:2], "apply", inactive={"a"}).units == {"a", "b"}  # c has no decision
    everything = run_skips(stages, decisions, "apply", inactive={"a"})
    assert everything.units == {"a", "b", "c"} and everything.rollbacks == {"schema"}


def test_run_skips_in_a_plan_run_skips_every_unit_rollback_and_undo_task() -> None:
    stages = _stages(schema=["a"], data=["b"])
    skips = run_skips(stages, _decided(stages, a=NextAction.APPLY), "plan", undo=[stages[1].units[0]])
    assert skips.units == {"a", "b"} and skips.rollbacks == {"schema", "data"}
    assert skips.undo and skips.undo_stages == {"schema", "data"}


def test_run_skips_in_an_undo_run_skips_the_stage_undo_tasks_before_the_newest_stage_with_work() -> None:
    stages = _stages(schema=["a", "b"], data=["c"], more=["d"], late=["e"])
    c, b = stages[1].units[0], stages[0].units[1]
    skips = run_skips(stages, _decided(stages, a=NextAction.APPLY), "undo", undo=[c, b])
    assert skips.units == {"a", "b", "c", "d", "e"} and skips.rollbacks == {"schema", "data", "more", "late"}
    assert not skips.undo  # the entry task checks the undo under the lease
    assert skips.undo_stages == {"late", "more"}  # newest first, up to data; schema has work too
    nothing = run_skips(stages, _decided(stages), "undo", undo=[])
    assert nothing.undo and nothing.undo_stages == {"schema", "data", "more", "late"}


def test_every_action_has_one_rule_for_the_lease_the_work_and_the_asset() -> None:
    assert set(ACTION_RULES) == {"apply", "plan", "undo", "rehearse"}
    actions = ("apply", "plan", "undo", "rehearse")
    assert [action_rule(a).takes_lease for a in actions] == [True, False, True, False]
    assert [(action_rule(a).applies, action_rule(a).undoes) for a in actions] == [
        (True, False),
        (False, False),
        (False, True),
        (False, False),
    ]
    assert [a for a, r in ACTION_RULES.items() if r.emits_asset] == ["apply"]
    assert [a for a, r in ACTION_RULES.items() if r.rehearses] == ["rehearse"]
    with pytest.raises(KeyError):
        action_rule("apply_all")
