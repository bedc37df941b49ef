"""The lease contract, on every lease backend (``tests/stores/conftest.py``: SQLite, MongoDB, DynamoDB, Redis).

The five atomic operations (acquire, extend, release, current, force_release), fencing tokens,
expiry and takeover, and the :class:`Lease` handle on top: waiting, its timeout, the heartbeat, a lost
lease noticed before the next write, and processes racing for one lease. Where the runner's clock
judges expiry the tests move an injected clock; where the server's does they wait a second past it.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from flamingock_provider.core.lease import Lease, LeaseBackend
from flamingock_provider.core.model import LockConfig
from flamingock_provider.exceptions import LeaseLostError, LockTimeoutError
from tests.stores.conftest import Backend, FakeClock
from tests.stores.racers import ROUNDS, contend

HEARTBEAT_LEASE_S = 3.0  # beats every second: two missed beats still leave a second to spare


def held(lease: LeaseBackend, key: str) -> tuple[str, int] | None:
    info = lease.current(key)
    return None if info is None else (info.owner, info.token)


# -- the five operations ----------------------------------------------------------------------


def test_acquire_extend_release(lease_backend: Backend, key: str) -> None:
    lease = lease_backend.lease
    info = lease.acquire(key, "dag/run_1", 30)
    assert info is not None
    assert (info.key, info.owner) == (key, "dag/run_1") and info.token >= 1
    assert info.expires_at > info.acquired_at

    extended = lease.extend(key, "dag/run_1", info.token, 60)
    assert extended is not None
    assert (extended.token, extended.acquired_at) == (info.token, info.acquired_at)
    assert extended.expires_at > info.expires_at

    assert lease.release(key, "dag/run_1", info.token) is True
    assert lease.current(key) is None
    assert lease.release(key, "dag/run_1", info.token) is False


def test_a_held_lease_refuses_every_other_owner(lease_backend: Backend, key: str) -> None:
    lease = lease_backend.lease
    first = lease.acquire(key, "a", 30)
    assert first is not None
    assert lease.acquire(key, "b", 30) is None
    assert lease.extend(key, "b", first.token, 30) is None
    assert lease.release(key, "b", first.token) is False
    assert held(lease, key) == ("a", first.token)
    assert lease.acquire(f"{key}_other", "b", 30) is not None  # other pipelines never block


def test_same_owner_reacquires_with_a_new_token_and_the_old_one_fences_nothing(
    lease_backend: Backend, key: str
) -> None:
    lease = lease_backend.lease
    first = lease.acquire(key, "a", 30)
    second = lease.acquire(key, "a", 30)
    assert first is not None and second is not None
    assert second.token == first.token + 1
    assert lease.extend(key, "a", first.token, 30) is None
    assert lease.release(key, "a", first.token) is False
    assert lease.extend(key, "a", second.token, 30) is not None
    assert held(lease, key) == ("a", second.token)


def test_every_acquisition_takes_the_next_token_even_after_release_and_force_release(
    lease_backend: Backend, key: str
) -> None:
    lease = lease_backend.lease
    tokens = []
    for owner in ("a", "b", "a", "c"):
        info = lease.acquire(key, owner, 30)
        assert info is not None
        tokens.append(info.token)
        assert lease.release(key, owner, info.token)
    info = lease.acquire(key, "d", 30)
    assert info is not None
    tokens.append(info.token)
    assert lease.force_release(key) is not None
    info = lease.acquire(key, "e", 30)
    assert info is not None
    tokens.append(info.token)
    assert tokens == list(range(1, 7))


def test_force_release_frees_the_lease_and_returns_the_previous_holder(lease_backend: Backend, key: str) -> None:
    lease = lease_backend.lease
    assert lease.current(key) is None and lease.force_release(key) is None
    taken = lease.acquire(key, "a", 30)
    assert taken is not None
    previous = lease.force_release(key)
    assert previous is not None
    assert (previous.owner, previous.token, previous.acquired_at) == ("a", taken.token, taken.acquired_at)
    assert lease.current(key) is None and lease.force_release(key) is None
    assert lease.release(key, "a", taken.token) is False
    after = lease.acquire(key, "b", 30)
    assert after is not None and after.token == taken.token + 1


def test_current_reports_the_holder_in_utc(lease_backend: Backend, key: str) -> None:
    lease = lease_backend.lease
    lease.acquire(key, "a", 30)
    info = lease.current(key)
    assert info is not None and info.owner == "a"
    assert info.acquired_at.utcoffset() == timedelta(0) and info.expires_at.utcoffset() == timedelta(0)
    assert abs((info.expires_at - info.acquired_at).total_seconds() - 30) <= 0.5
    assert info.to_dict()["expires_at"].endswith("+00:00")


# -- expiry -------------------------------------------------------------------------------------


def test_an_expired_lease_is_free_and_taken_over_with_a_higher_token(lease_backend: Backend, key: str) -> None:
    lease, ttl = lease_backend.lease, lease_backend.short_ttl
    old = lease.acquire(key, "a", ttl)
    assert old is not None
    lease_backend.pass_expiry(ttl)  # "a" froze (a GC pause, a stopped VM) past its lease
    assert lease.current(key) is None

    new = lease.acquire(key, "b", 30)
    assert new is not None and new.owner == "b" and new.token > old.token
    assert lease.extend(key, "a", old.token, 30) is None
    assert lease.release(key, "a", old.token) is False
    assert held(lease, key) == ("b", new.token)


# -- the Lease handle ---------------------------------------------------------------------------


def test_lease_wait_times_out_naming_the_holder(lease_backend: Backend, key: str) -> None:
    assert lease_backend.lease.acquire(key, "cli/host/1/abcd", 600) is not None
    waiting = FakeClock()  # the runner's wait is the runner's clock, whichever clock the store judges by
    config = LockConfig(lease_seconds=30, wait_timeout_seconds=5, poke_interval_seconds=0.5)
    lease = Lease(lease_backend.lease, key, "dag/run_2", config, clock=waiting, sleep=waiting.sleep)
    with pytest.raises(LockTimeoutError) as caught:
        lease.acquire()
    assert caught.value.owner == "cli/host/1/abcd" and "cli/host/1/abcd" in str(caught.value)
    assert caught.value.expires_at is not None and caught.value.exit_code == 3
    assert len(waiting.sleeps) >= 3  # every refused attempt meant "wait and try again"


def test_lease_waits_for_an_expired_holder_then_takes_over(lease_backend: Backend, key: str) -> None:
    ttl = lease_backend.short_ttl
    old = lease_backend.lease.acquire(key, "dead", ttl)
    assert old is not None
    clock, sleep = lease_backend.lease_clock()
    config = LockConfig(lease_seconds=30, wait_timeout_seconds=ttl + 30, poke_interval_seconds=ttl / 5)
    lease = Lease(lease_backend.lease, key, "alive", config, clock=clock, sleep=sleep)
    info = lease.acquire()
    assert info.owner == "alive" and info.token > old.token
    assert lease.release() is True


def test_heartbeat_keeps_a_short_lease_alive(lease_backend: Backend, key: str) -> None:
    """The heartbeat extends every lease_seconds / 3; the lease outlives its first expiry by a second and more."""
    backend, ttl = lease_backend.lease, HEARTBEAT_LEASE_S
    clock, sleep = lease_backend.lease_clock()
    lease = Lease(backend, key, "dag/run_1", LockConfig(lease_seconds=ttl), clock=clock, sleep=sleep)
    first = lease.acquire(timeout_s=1)
    with lease.heartbeat():
        if lease_backend.clock is not None:
            lease_backend.clock.advance(ttl / 2)  # the next beat extends from here
        wait_until(lambda: expiry(backend, key) > first.expires_at, timeout_s=10)
        if lease_backend.clock is not None:
            lease_backend.clock.advance(ttl / 2 + 1)  # a second past the first expiry, inside the extended one
        else:
            wait_until(lambda: time.time() > first.expires_at.timestamp() + 1, timeout_s=10)
        assert backend.acquire(key, "dag/run_2", 30) is None
        lease.check()
    assert held(backend, key) == ("dag/run_1", first.token)
    lease.ensure()
    assert lease.release() is True and backend.current(key) is None


def test_a_lost_lease_is_noticed_before_the_next_write(lease_backend: Backend, key: str) -> None:
    ttl = lease_backend.short_ttl
    clock, sleep = lease_backend.lease_clock()
    lease = Lease(lease_backend.lease, key, "a", LockConfig(lease_seconds=ttl), clock=clock, sleep=sleep)
    lease.acquire()
    lease_backend.pass_expiry(ttl)
    assert lease_backend.lease.acquire(key, "b", 30) is not None
    with pytest.raises(LeaseLostError, match="lease lost"):
        lease.ensure()
    with pytest.raises(LeaseLostError):
        lease.check()


def expiry(backend: LeaseBackend, key: str) -> Any:
    info = backend.current(key)
    assert info is not None, "the lease expired while its heartbeat ran"
    return info.expires_at


def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``condition`` (a background thread's effect) until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


# -- processes racing: never two holders ----------------------------------------------------------

WORKERS = 4


def test_processes_racing_never_hold_the_lease_together(lease_backend: Backend, key: str) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a process with driver threads
    ready, out, go = context.Queue(), context.Queue(), context.Event()
    procs = [
        context.Process(target=contend, args=(lease_backend.reopen, key, f"cli/host/{n}/x", ready, go, out))
        for n in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            ready.get(timeout=120)  # every process has opened its backend: they start together
        go.set()
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
    assert [proc.exitcode for proc in procs] == [0] * WORKERS
    holds = sorted(hold for found, _ in results for hold in found)
    assert len(holds) == WORKERS * ROUNDS
    for (_, end, token), (start, _, next_token) in itertools.pairwise(holds):
        assert end <= start, "two holders held the lease at the same time"
        assert next_token > token, "the fencing token did not increase with each acquisition"
    assert sum(waits for _, waits in results) > 0  # contention happened, and meant waiting
