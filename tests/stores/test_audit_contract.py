"""The audit-store contract, on every audit store (``tests/stores/conftest.py``: SQLite, MongoDB, DynamoDB).

Append and latest, history in order, every field round-tripping, latest() costing one query however
long the history grows, and fenced writes: accepted for the lease's holder, refused once its lease
expired or was taken over.
"""

from __future__ import annotations

import pytest

from flamingock_provider.core.audit import AuditStore
from flamingock_provider.core.lease import Fence
from flamingock_provider.core.model import ErrorInfo, State
from flamingock_provider.exceptions import LeaseLostError
from tests.stores.conftest import Backend, entry


def store_of(backend: Backend) -> AuditStore:
    assert backend.store is not None
    return backend.store


def states(store: AuditStore, pipeline: str = "p", change: str | None = None) -> list[tuple[str, State]]:
    return [(e.change_id, e.state) for e in store.history(pipeline, change)]


def test_latest_is_the_newest_entry_of_each_change_and_history_keeps_them_all(audit_backend: Backend) -> None:
    store = store_of(audit_backend)
    for i in range(15):
        store.append(entry(f"c{i}", State.STARTED))
        store.append(entry(f"c{i}", State.APPLIED))
    store.append(entry("c0", State.ROLLED_BACK))
    store.append(entry("other", pipeline="q"))

    latest = store.latest("p")
    assert set(latest) == {f"c{i}" for i in range(15)}
    assert latest["c0"].state is State.ROLLED_BACK
    assert all(e.state is State.APPLIED for change, e in latest.items() if change != "c0")
    assert states(store, change="c3") == [("c3", State.STARTED), ("c3", State.APPLIED)]
    assert states(store, change="c0")[-1] == ("c0", State.ROLLED_BACK)
    assert list(store.latest("q")) == ["other"] and store.latest("nothing") == {}

    seqs = [e.seq for e in store.history("p")]
    assert len(seqs) == 31 and all(isinstance(s, int) for s in seqs)
    assert seqs == sorted(seqs) and len(set(seqs)) == 31  # in append order, never repeated


def test_latest_costs_one_query_however_long_the_history_grows(audit_backend: Backend) -> None:
    store, queries = store_of(audit_backend), audit_backend.queries
    assert queries is not None
    costs = []
    for _ in range(3):
        for i in range(10):
            store.append(entry(f"c{i}", State.STARTED))
            store.append(entry(f"c{i}", State.APPLIED))
        with queries() as sent:
            latest = store.latest("p")
        assert len(latest) == 10
        costs.append(list(sent))
    assert [len(cost) for cost in costs] == [1, 1, 1], costs  # 20, 40 then 60 entries: still one
    assert costs[0] == costs[1] == costs[2]


def test_an_entry_round_trips_every_field(audit_backend: Backend) -> None:
    store = store_of(audit_backend)
    rich = entry(
        "c1",
        error=ErrorInfo("ValueError", "boom", "trace"),
        metadata={"team": "catalog"},
        undo_state=[{"ids": [{"$oid": "65f000000000000000000001"}]}],
        lock_token=3,
    )
    large = entry("c2", undo_state={"body": "x" * 200_000})  # past DynamoDB's item limit uncompressed
    stored = [store.append(rich), store.append(large)]
    again = {e.change_id: e for e in store.history("p")}
    for original in stored:
        assert again[original.change_id].to_dict() == original.to_dict()
        assert again[original.change_id].seq == original.seq
    assert again["c1"].created_at.utcoffset() is not None


def test_approval_and_bundle_version_round_trip(audit_backend: Backend) -> None:
    store = store_of(audit_backend)
    approved = entry(
        "c1", approved_by="alice", approval_note="CHG-42: drop legacy_orders ✓", bundle_version="9f2c" + "0" * 36
    )
    store.append(approved)
    store.append(entry("c2"))  # a run nobody had to approve, outside Airflow
    again = {e.change_id: e for e in store.history("p")}
    assert (again["c1"].approved_by, again["c1"].approval_note, again["c1"].bundle_version) == (
        "alice",
        "CHG-42: drop legacy_orders ✓",
        "9f2c" + "0" * 36,
    )
    assert (again["c2"].approved_by, again["c2"].approval_note, again["c2"].bundle_version) == (None, None, None)
    assert store.latest("p")["c1"].approved_by == "alice"


# -- fenced writes ----------------------------------------------------------------------------


def test_fenced_writes_are_accepted_from_the_holder_and_refused_after_a_takeover(audit_backend: Backend) -> None:
    store, lease, ttl = store_of(audit_backend), audit_backend.lease, audit_backend.short_ttl
    first = lease.acquire("p", "A", ttl)
    assert first is not None
    store.append(entry("c1", State.STARTED), fence=Fence("p", "A", first.token))
    audit_backend.pass_expiry(ttl)
    taken = lease.acquire("p", "B", 30)
    assert taken is not None and taken.token == first.token + 1

    with pytest.raises(LeaseLostError):
        store.append(entry("c1"), fence=Fence("p", "A", first.token))
    assert states(store) == [("c1", State.STARTED)] and store.latest("p")["c1"].state is State.STARTED
    store.append(entry("c1"), fence=Fence("p", "B", taken.token))
    assert states(store) == [("c1", State.STARTED), ("c1", State.APPLIED)]
    assert store.latest("p")["c1"].state is State.APPLIED


def test_a_fenced_write_is_refused_once_the_lease_expired_even_without_a_takeover(audit_backend: Backend) -> None:
    store, lease, ttl = store_of(audit_backend), audit_backend.lease, audit_backend.short_ttl
    held = lease.acquire("p", "A", ttl)
    assert held is not None
    store.append(entry("c1", State.STARTED), fence=Fence("p", "A", held.token))
    audit_backend.pass_expiry(ttl)
    with pytest.raises(LeaseLostError, match="lease lost"):
        store.append(entry("c1"), fence=Fence("p", "A", held.token))
    assert states(store) == [("c1", State.STARTED)]


def test_a_fence_with_another_owner_or_an_old_token_is_refused(audit_backend: Backend) -> None:
    store, lease = store_of(audit_backend), audit_backend.lease
    old = lease.acquire("p", "A", 30)
    new = lease.acquire("p", "A", 30)  # the same owner again: a new token
    assert old is not None and new is not None
    for fence in (Fence("p", "A", old.token), Fence("p", "B", new.token), Fence("q", "A", new.token)):
        with pytest.raises(LeaseLostError):
            store.append(entry("c1", pipeline=fence.key), fence=fence)
    assert store.history("p") == [] and store.latest("p") == {} and store.history("q") == []
    store.append(entry("c1"), fence=Fence("p", "A", new.token))
    assert states(store) == [("c1", State.APPLIED)]
