"""The fault scenarios, as plain functions: the tests run them with reduced counts, ``bench/faults.py`` in full.

Each drives real ``flamingock`` processes (:class:`~tests.reliability.pool.RunnerPool`) against one
backend, asserts what a user must see (exit codes, the ``FAILED:`` or ``fix`` lines) and returns a
:class:`~tests.reliability.helpers.Tally` whose duplicates and lost units must be zero.
"""

from __future__ import annotations

import random
import shlex
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flamingock_provider.commandline import fix_command
from flamingock_provider.core.model import TxStrategy
from tests.reliability.backends import NON_TX, TX_SEPARATE, TX_SHARED, Backend, UnitSpec
from tests.reliability.helpers import (
    Counts,
    Tally,
    by_change,
    contiguous_executions,
    final_states,
    verdict,
    write_pipeline,
)
from tests.reliability.pool import Runner, RunnerPool

KILL_UNITS = 5
# Short enough to wait out, long enough that a runner starved of CPU for a second or two (two cores,
# other suites running) still extends its lease in time: a heartbeat every third, a deadline at 90%.
SHORT_LEASE_S = 4.0
KILL_LEASE_S = 5.0


def _ids(specs: Sequence[UnitSpec]) -> list[str]:
    return [s.id for s in specs]


def _ok(runner: Runner, code: int = 0) -> Runner:
    status = runner.wait()
    assert status == code, f"expected exit {code}, got {status}: {runner.describe()}"
    return runner


# -- 1. races -------------------------------------------------------------------------------------


def race(pool: RunnerPool, backend: Backend, counts: Counts) -> Tally:
    """``processes`` runners apply one pipeline at once, ``repeats`` times: each unit once, lease released."""
    tally = Tally()
    specs = [UnitSpec(f"u{i}") for i in range(1, counts.units + 1)]
    for _ in range(counts.repeats):
        pipe = write_pipeline(backend, backend.root, specs, prefix="race", lease_s=60)
        runners = [pool.spawn(["apply", str(pipe), "--json"], backend.env) for _ in range(counts.processes)]
        results = [_ok(r).json() for r in runners]
        tally.runs += len(runners)
        applied = Counter(unit for result in results for unit in result["applied"])
        assert applied == Counter(_ids(specs)), f"{pipe.name}: applied {applied}"
        assert all(r["failed"] is None and r["blocked"] is None for r in results), results
        assert backend.holder(pipe.name) is None, f"{pipe.name}: lease not released"
        tally += verdict(backend, pipe.name, _ids(specs))
    return tally


# -- 2. killed workers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """Where a runner dies: in ``victim`` at ``point``."""

    victim: UnitSpec
    point: str

    @property
    def committed(self) -> bool:
        """Did the victim's change reach its target before the kill?"""
        if self.victim.strategy is TX_SHARED:
            return False
        if self.victim.strategy is TX_SEPARATE:
            return self.point == "before-APPLIED"
        return self.point != "before-write"

    @property
    def blocks(self) -> bool:
        return self.victim.strategy is NON_TX and self.victim.recovery == "manual_intervention"


def kill_points(backend: Backend, spec: UnitSpec) -> list[str]:
    if backend.python_points(spec):
        return ["before-write", "after-write", "before-APPLIED"]
    return ["after-STARTED", "before-APPLIED"]  # a template unit: around the engine's audit writes


def random_units(rng: random.Random, backend: Backend, n: int) -> list[UnitSpec]:
    specs = []
    for i in range(1, n + 1):
        strategy = rng.choice(backend.strategies)
        recovery = rng.choice(["manual_intervention", "always_retry"]) if strategy is NON_TX else "manual_intervention"
        specs.append(UnitSpec(f"u{i}", strategy, recovery, idempotent=recovery == "always_retry"))
    return specs


# The first kills of every backend: one per way of resuming (blocked, retried, reconciled, no trace).
COVERAGE = (
    (NON_TX, "manual_intervention", "after-write"),
    (NON_TX, "always_retry", "after-write"),
    (TX_SEPARATE, "manual_intervention", "before-APPLIED"),
    (TX_SHARED, "manual_intervention", "before-APPLIED"),
)


def draw_kill(rng: random.Random, backend: Backend, number: int) -> tuple[list[UnitSpec], Kill]:
    """The pipeline and the kill of the ``number``-th kill: COVERAGE first, then random draws."""
    specs = random_units(rng, backend, KILL_UNITS)
    index = rng.randrange(KILL_UNITS)
    if number < len(COVERAGE):
        strategy, recovery, point = COVERAGE[number]
        specs[index] = UnitSpec(specs[index].id, strategy, recovery, idempotent=recovery == "always_retry")
        return specs, Kill(specs[index], point)
    return specs, Kill(specs[index], rng.choice(kill_points(backend, specs[index])))


def kills(pool: RunnerPool, backend: Backend, counts: Counts, seed: int) -> Tally:
    """SIGKILL a runner at random points inside units; the next run resumes, nothing applied twice."""
    tally = Tally()
    rng = random.Random(seed)
    for number in range(counts.kills):
        specs, kill = draw_kill(rng, backend, number)
        victim = kill.victim
        pipe = write_pipeline(backend, backend.root, specs, prefix="kill", lease_s=KILL_LEASE_S)
        runner = pool.spawn(["apply", str(pipe), "--json"], backend.env, pause=f"{victim.id}:{kill.point}")
        runner.wait_paused()
        assert runner.kill() == -signal.SIGKILL
        tally.kills += 1
        _check_after_kill(backend, pipe.name, specs, kill)
        # Every fourth resume waits out the dead runner's lease; the others unlock it, as an operator would.
        tally.runs += 1 + _resume(pool, backend, str(pipe), kill, unlock=number % 4 != 0)
        tally += verdict(backend, pipe.name, _ids(specs))
        assert backend.holder(pipe.name) is None, f"{pipe.name}: lease not released"
    return tally


def _check_after_kill(backend: Backend, pipeline: str, specs: Sequence[UnitSpec], kill: Kill) -> None:
    where = f"{pipeline} killed in {kill.victim.id} ({kill.victim.strategy.value}) at {kill.point}"
    history = by_change(backend.history(pipeline))
    mine = history.get(kill.victim.id, [])
    if kill.victim.strategy is TX_SHARED:
        assert mine == [], f"{where}: TX_SHARED left audit entries {mine}"
    else:
        assert [e.state.value for e in mine] == ["STARTED"], f"{where}: {[e.state.value for e in mine]}"
        assert mine[0].tx_strategy is kill.victim.strategy, where
    records = backend.ledger(pipeline).get(kill.victim.id, [])
    assert len(records) == (1 if kill.committed else 0), f"{where}: target shows {records}"
    index = _ids(specs).index(kill.victim.id)
    assert all(history[s.id][-1].state.value == "APPLIED" for s in specs[:index]), where
    assert not any(s.id in history for s in specs[index + 1 :]), where


def _resume(pool: RunnerPool, backend: Backend, pipe: str, kill: Kill, *, unlock: bool) -> int:
    """Run what an operator runs after the crash; return how many runners that took."""
    runs = 0
    if unlock:  # the operator checked that the runner is dead; else wait out its lease
        result = _ok(pool.run(["unlock", pipe, "--force", "--json"], backend.env)).json()
        assert result["released"] is True, result
        runs += 1
    victim = kill.victim.id
    if kill.victim.strategy is TX_SEPARATE and kill.committed:
        plan = {c["id"]: c for c in _ok(pool.run(["plan", pipe, "--json"], backend.env)).json()["changes"]}
        assert plan[victim]["action"] == "skip" and "recorded APPLIED" in plan[victim]["reason"], plan[victim]
        runs += 1
    if kill.blocks:
        runs += _fix_blocked(pool, backend, pipe, kill)
    result = _ok(pool.run(["apply", pipe, "--json"], backend.env)).json()
    runs += 1
    reconciled = kill.victim.strategy is TX_SEPARATE and kill.committed
    done_before = kill.blocks and kill.committed  # fixed as applied by the operator
    expected = "skipped" if reconciled or done_before else "applied"
    assert victim in result[expected], f"{victim} not {expected}: {result}"
    return runs


def _fix_blocked(pool: RunnerPool, backend: Backend, pipe: str, kill: Kill) -> int:
    """A STARTED manual_intervention unit blocks with the exact fix command; the operator runs it."""
    victim = kill.victim.id
    human = pool.run(["apply", pipe], backend.env)
    _ok(human, 4)
    rolled_back = fix_command(pipe, victim, "rolled-back")
    assert f"fix: {rolled_back}" in human.stdout, human.stdout
    blocked = _ok(pool.run(["apply", pipe, "--json"], backend.env), 4).json()["blocked"]
    assert (blocked["id"], blocked["state"], blocked["fix"]) == (victim, "STARTED", rolled_back), blocked
    assert fix_command(pipe, victim, "applied") in blocked["reason"], blocked
    # The operator looks at the target: the change is in place -> applied; else the printed command.
    command = fix_command(pipe, victim, "applied") if kill.committed else blocked["fix"]
    _ok(pool.run([*shlex.split(command)[1:], "--json"], backend.env))
    return 3


# -- 3. lost lease / fencing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Freeze:
    """Where a holder is frozen: the third of six units has ``strategy`` and the freeze ``point``."""

    name: str
    strategy: TxStrategy
    point: str
    recovery: str = "manual_intervention"


FREEZES = (
    Freeze("between units", NON_TX, "after-APPLIED"),
    Freeze("before a python unit's code", NON_TX, "after-STARTED", "always_retry"),
    Freeze("inside a TX_SEPARATE transaction", TX_SEPARATE, "after-write"),
)


def freezes(backend: Backend) -> list[Freeze]:
    """The freeze points a backend can take over from (SQLite targets: not from inside a write transaction,
    which holds the target database's lock; DynamoDB template units: before their write)."""
    found = list(FREEZES[:2])
    if backend.name in ("mongo", "postgres", "mariadb"):
        found.append(FREEZES[2])
    if backend.name == "dynamodb":
        found.append(Freeze("inside a TX_SEPARATE unit", TX_SEPARATE, "after-STARTED"))
    return found


def fencing(pool: RunnerPool, backend: Backend, freeze: Freeze, repeats: int) -> Tally:
    """A holder frozen (SIGSTOP) past its lease; a taker gets a higher token; the holder, resumed, is refused."""
    tally = Tally()
    for _ in range(repeats):
        specs = [UnitSpec(f"u{i}") for i in range(1, 7)]
        specs[2] = UnitSpec("u3", freeze.strategy, freeze.recovery, idempotent=freeze.recovery == "always_retry")
        pipe = write_pipeline(backend, backend.root, specs, prefix="fence", lease_s=SHORT_LEASE_S)
        holder = pool.spawn(["apply", str(pipe), "--json"], backend.env, pause=f"u3:{freeze.point}")
        holder.wait_paused()
        lease = backend.holder(pipe.name)
        assert lease is not None, f"{pipe.name}: no lease while the holder runs"
        holder.send(signal.SIGSTOP)
        holder.resume()  # it goes on as soon as it runs again
        taker = _ok(pool.run(["apply", str(pipe), "--json"], backend.env))
        before = backend.history(pipe.name)
        holder.send(signal.SIGCONT)
        _ok(holder, 1)
        tally.runs += 2
        tally.takeovers += 1
        assert "FAILED: lease lost" in holder.stderr, holder.describe()
        after = backend.history(pipe.name)
        assert after == before, f"{pipe.name}: the refused holder wrote {after[len(before) :]}"
        taken = {e.lock_token or 0 for e in after if e.lock_token != lease.token}
        assert taken and min(taken) > lease.token, f"{pipe.name}: taker tokens {taken} vs holder {lease.token}"
        _check_taker_wrote(backend, pipe.name, ["u3", "u4", "u5", "u6"], taker, freeze)
        tally += verdict(backend, pipe.name, _ids(specs))
        assert backend.holder(pipe.name) is None
    return tally


def _check_taker_wrote(backend: Backend, pipeline: str, units: Sequence[str], taker: Runner, freeze: Freeze) -> None:
    ledger = backend.ledger(pipeline)
    mine = units if freeze.point != "after-APPLIED" else units[1:]
    for unit in mine:
        records = ledger.get(unit, [])
        assert len(records) == 1, f"{pipeline}/{unit}: {records}"
        assert records[0].pid in (taker.pid, None), f"{pipeline}/{unit}: written by pid {records[0].pid}"
    assert taker.json()["applied"][-1] == "u6"


# -- 4. clock skew ----------------------------------------------------------------------------------

SKEW_S = 30.0
STANDOFF_S = 1.5  # how long the runner ahead polls (every 0.1-0.25 s) while the holder behind stands still
SKEW_UNITS = 8
SKEW_UNIT_S = 0.5  # eight units outlast the lease (of a server-clock store): the heartbeat must extend it


def skew_lease(backend: Backend) -> float:
    """A lease that stays exclusive under ±SKEW_S. Server clocks (MongoDB, Redis): any, a short one here. Host clocks
    (SQLite, DynamoDB): a taker ahead by the spread D sees a lease end D early, and the heartbeat extends every
    third of it, so lease_seconds > 1.5 x D is needed; 2.5 x D leaves a margin."""
    return SHORT_LEASE_S if not backend.host_clock else 2.5 * 2 * SKEW_S


def skew(pool: RunnerPool, backend: Backend, counts: Counts, lease_s: float | None = None) -> Tally:
    """Runners whose clocks differ by ±SKEW_S never hold the lease at the same time."""
    tally = Tally()
    specs = [UnitSpec(f"u{i}", sleep_s=SKEW_UNIT_S) for i in range(1, SKEW_UNITS + 1)]
    lease = skew_lease(backend) if lease_s is None else lease_s
    pipe = write_pipeline(backend, backend.root, specs, prefix="skew", lease_s=lease)
    runners = []
    for i in range(counts.skewed):
        env = {**backend.env, "FLAMINGOCK_TEST_CLOCK_SKEW": str(SKEW_S if i % 2 else -SKEW_S)}
        runners.append(pool.spawn(["apply", str(pipe), "--json"], env))
    results = [_ok(r).json() for r in runners]
    tally.runs += len(runners)
    applied = Counter(unit for result in results for unit in result["applied"])
    assert applied == Counter(_ids(specs)), applied
    history = backend.history(pipe.name)
    assert contiguous_executions(history), [(e.execution_id[:6], e.change_id, e.state.value) for e in history]
    assert backend.holder(pipe.name) is None
    tally += verdict(backend, pipe.name, _ids(specs))
    return tally


def skew_standoff(pool: RunnerPool, backend: Backend, lease_s: float) -> tuple[Tally, bool]:
    """A holder whose clock is SKEW_S behind stands still between units, heartbeating, while a runner SKEW_S
    ahead polls for the lease. Return the tally and whether the runner ahead took the live lease over; if it
    did, the holder must then be refused (exit 1, "lease lost") and every unit is still applied once."""
    tally = Tally()
    specs = [UnitSpec(f"u{i}") for i in range(1, 5)]
    pipe = write_pipeline(backend, backend.root, specs, prefix="standoff", lease_s=lease_s)
    behind = {**backend.env, "FLAMINGOCK_TEST_CLOCK_SKEW": str(-SKEW_S)}
    holder = pool.spawn(["apply", str(pipe), "--json"], behind, pause="u2:after-APPLIED")
    holder.wait_paused()
    ahead = pool.spawn(["apply", str(pipe), "--json"], {**backend.env, "FLAMINGOCK_TEST_CLOCK_SKEW": str(SKEW_S)})
    deadline = time.monotonic() + STANDOFF_S
    while ahead.returncode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    took_over = ahead.returncode is not None
    holder.resume()
    _ok(holder, 1 if took_over else 0)
    _ok(ahead)
    tally.runs += 2
    if took_over:
        tally.takeovers += 1
        assert "FAILED: lease lost" in holder.stderr, holder.describe()
    history = backend.history(pipe.name)
    held, later = {e.lock_token or 0 for e in history[:4]}, {e.lock_token or 0 for e in history[4:]}
    assert len(held) == 1 and (later == held) is not took_over, f"{pipe.name}: holder tokens {held}, then {later}"
    assert not took_over or min(later) > max(held), f"{pipe.name}: a takeover without a higher token: {later}"
    assert contiguous_executions(history)
    tally += verdict(backend, pipe.name, _ids(specs))
    return tally, took_over


# -- 5. store outages -------------------------------------------------------------------------------


# u3, where the run stands when the store goes down, is not TX_SHARED: it would hold the store's transaction.
OUTAGE_STRATEGIES = (NON_TX, TX_SEPARATE, NON_TX, TX_SHARED, TX_SEPARATE, NON_TX)


@dataclass(frozen=True)
class Outage:
    """How to take a backend's audit or lease store down and bring it back."""

    stop: Callable[[], object]
    start: Callable[[], object]
    names: str  # the store, as the FAILED: line must name it


def outage(pool: RunnerPool, backend: Backend, down: Outage, repeats: int) -> Tally:
    """Stop the store while a run stands between units: exit 1 naming the store, nothing wrongly APPLIED,
    and the next run after recovery completes."""
    tally = Tally()
    for _ in range(repeats):
        specs = [UnitSpec(f"u{i}", strategy) for i, strategy in enumerate(OUTAGE_STRATEGIES, 1)]
        pipe = write_pipeline(backend, backend.root, specs, prefix="outage", lease_s=KILL_LEASE_S)
        runner = pool.spawn(["apply", str(pipe), "--json"], backend.env, pause="u3:after-APPLIED")
        runner.wait_paused()
        down.stop()
        try:
            runner.resume()
            _ok(runner, 1)
        finally:
            down.start()
        tally.outages += 1
        failed = [line for line in runner.stderr.splitlines() if line.startswith("FAILED:")]
        assert len(failed) == 1 and down.names in failed[0], runner.describe()
        assert "release" not in failed[0], f"the release that failed after the outage hid its first failure: {failed}"
        assert "Traceback" not in runner.stderr, runner.describe()
        states = final_states(backend, pipe.name)  # nothing recorded for u4 on: not even STARTED
        assert {u: s.value for u, s in states.items()} == dict.fromkeys(["u1", "u2", "u3"], "APPLIED"), states
        ledger = backend.ledger(pipe.name)
        assert set(ledger) == {"u1", "u2", "u3"}, f"{pipe.name}: the failed run touched {set(ledger)}"
        result = _ok(pool.run(["apply", str(pipe), "--json"], backend.env)).json()
        tally.runs += 2
        assert result["applied"] == ["u4", "u5", "u6"], result
        tally += verdict(backend, pipe.name, _ids(specs))
        assert backend.holder(pipe.name) is None
    return tally
