"""The embedded SQLite store: audit log, lease semantics, fencing and cross-process safety."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from flamingock_provider.core.lease import Fence, Lease
from flamingock_provider.core.model import Action, AuditEntry, LockConfig, State
from flamingock_provider.exceptions import LeaseLostError, LockTimeoutError, StoreError
from flamingock_provider.stores.sqlite import SqliteStore


class FakeClock:
    """An injected wall clock: lease expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def entry(change: str, state: State = State.APPLIED, pipeline: str = "p") -> AuditEntry:
    return AuditEntry(
        pipeline=pipeline,
        stage="main",
        change_id=change,
        author="a",
        state=state,
        action=Action.APPLY,
        created_at=datetime.now(timezone.utc),
        execution_id="e",
    )


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "audit.db")


def test_latest_is_one_query_over_many_entries(store: SqliteStore) -> None:
    for i in range(50):
        store.append(entry(f"c{i}", State.STARTED))
        store.append(entry(f"c{i}", State.APPLIED))
    store.append(entry("other", pipeline="q"))
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)
    latest = store.latest("p")
    assert len(statements) == 1
    assert len(latest) == 50 and all(e.state is State.APPLIED for e in latest.values())
    assert [e.state for e in store.history("p", "c3")] == [State.STARTED, State.APPLIED]


def test_entry_round_trips_every_field(store: SqliteStore) -> None:
    original = entry("c1")
    stored = store.append(original)
    [again] = store.history("p")
    assert stored.seq == again.seq and again.to_dict() == stored.to_dict()


def test_acquire_is_exclusive_and_tokens_increase(store: SqliteStore) -> None:
    first = store.acquire("p", "A", 30)
    assert first is not None and first.token == 1
    assert store.acquire("p", "B", 30) is None
    assert store.acquire("q", "B", 30) is not None  # other pipelines never block
    assert store.release("p", "A", 1)
    second = store.acquire("p", "B", 30)
    assert second is not None and second.token == 2


def test_expiry_allows_takeover_and_fences_the_old_holder(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SqliteStore(tmp_path / "audit.db", clock=clock)
    assert store.acquire("p", "A", 10) is not None
    clock.now += 11
    taken = store.acquire("p", "B", 10)
    assert taken is not None and taken.token == 2
    assert store.extend("p", "A", 1, 10) is None
    assert not store.release("p", "A", 1)
    with pytest.raises(LeaseLostError):
        store.append(entry("c1"), fence=Fence("p", "A", 1))
    assert store.history("p") == []
    store.append(entry("c1"), fence=Fence("p", "B", 2))
    assert len(store.history("p")) == 1


def test_fenced_append_refused_after_expiry_even_without_takeover(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SqliteStore(tmp_path / "audit.db", clock=clock)
    store.acquire("p", "A", 10)
    clock.now += 10.5
    with pytest.raises(LeaseLostError):
        store.append(entry("c1"), fence=Fence("p", "A", 1))


def test_current_and_force_release(store: SqliteStore) -> None:
    assert store.current("p") is None
    store.acquire("p", "A", 30)
    holder = store.current("p")
    assert holder is not None and holder.owner == "A" and holder.expires_at.tzinfo is timezone.utc
    previous = store.force_release("p")
    assert previous is not None and previous.owner == "A"
    assert store.current("p") is None and store.force_release("p") is None


def test_lease_wait_times_out_naming_the_holder(store: SqliteStore) -> None:
    store.acquire("p", "cli/host/1/abcd", 60)
    lease = Lease(store, "p", "B", LockConfig(wait_timeout_seconds=0.3, poke_interval_seconds=0.05))
    with pytest.raises(LockTimeoutError) as err:
        lease.acquire()
    assert "cli/host/1/abcd" in str(err.value) and err.value.exit_code == 3


def test_heartbeat_keeps_a_short_lease_alive(store: SqliteStore) -> None:
    lease = Lease(store, "p", "A", LockConfig(lease_seconds=0.3))
    lease.acquire()
    with lease.heartbeat():
        time.sleep(0.8)
    lease.check()
    assert store.acquire("p", "B", 1) is None


def test_lost_lease_is_detected_before_the_next_write(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SqliteStore(tmp_path / "audit.db", clock=clock)
    lease = Lease(store, "p", "A", LockConfig(lease_seconds=10))
    lease.acquire()
    clock.now += 11
    assert store.acquire("p", "B", 10) is not None
    with pytest.raises(LeaseLostError, match="lease lost"):
        lease.ensure()
    with pytest.raises(LeaseLostError):
        lease.check()


def test_locked_database_becomes_a_store_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "audit.db", busy_timeout_s=0.2)
    blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            store.append(entry("c1"))
    finally:
        blocker.execute("ROLLBACK")
    store.append(entry("c1"))


def _grab(path: str, owner: str, rounds: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = SqliteStore(path)
    held = []
    for _ in range(rounds):
        info = store.acquire("p", owner, 5)
        if info is not None:
            start = time.time()
            time.sleep(0.002)
            held.append((start, time.time(), info.token))
            assert store.release("p", owner, info.token)
    out.put(held)


def test_processes_never_hold_the_lease_together(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    SqliteStore(path)
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=_grab, args=(path, f"o{i}", 40, queue)) for i in range(4)]
    for p in procs:
        p.start()
    intervals = sorted(i for _ in procs for i in queue.get(timeout=60))
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    tokens = [t for _, _, t in intervals]
    assert len(tokens) == len(set(tokens)) and intervals
    for (_, end, _), (start, _, _) in itertools.pairwise(intervals):
        assert end <= start
