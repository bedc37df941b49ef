"""Fleet members in the audit-store contract (SPEC §13), on every audit store of ``tests/stores/conftest.py``.

Each member's trail is its own (``<pipeline>@<member>``): its latest entries and history never mix with
another member's or the plain pipeline's; ``latest_members`` reads every member in one query whatever
the member count; ``current_many`` reads the members' live leases in one call.
"""

from __future__ import annotations

import pytest

from flamingock_provider.core.lease import Fence
from flamingock_provider.core.model import State, audit_key
from tests.stores.conftest import Backend, entry
from tests.stores.test_audit_contract import store_of


def test_each_member_has_its_own_trail_and_the_fleet_read_groups_them(audit_backend: Backend) -> None:
    store = store_of(audit_backend)
    store.append(entry("c1", State.APPLIED))  # the pipeline outside any fleet
    for n, member in enumerate(("acme", "globex")):
        store.append(entry("c1", State.STARTED, member=member))
        store.append(entry("c1", State.APPLIED if n == 0 else State.FAILED, member=member))
    store.append(entry("c2", State.APPLIED, member="acme"))
    store.append(entry("c1", State.APPLIED, pipeline="other", member="acme"))

    assert set(store.latest("p")) == {"c1"} and store.latest("p")["c1"].member is None
    acme = store.latest(audit_key("p", "acme"))
    assert {c: e.state for c, e in acme.items()} == {"c1": State.APPLIED, "c2": State.APPLIED}
    assert all(e.member == "acme" and e.pipeline == "p" for e in acme.values())
    history = store.history(audit_key("p", "globex"))
    assert [(e.change_id, e.state, e.member) for e in history] == [
        ("c1", State.STARTED, "globex"),
        ("c1", State.FAILED, "globex"),
    ]

    fleet = store.latest_members("p", ["acme", "globex", "initech"])
    assert {m: {c: e.state for c, e in changes.items()} for m, changes in fleet.items()} == {
        "acme": {"c1": State.APPLIED, "c2": State.APPLIED},
        "globex": {"c1": State.FAILED},
        "initech": {},
    }


@pytest.mark.slow  # ~60 appends: seconds on the moto server
def test_the_fleet_read_costs_one_query_for_4_or_24_members(audit_backend: Backend) -> None:
    store, queries = store_of(audit_backend), audit_backend.queries
    assert queries is not None
    costs = []
    for members in (4, 24):
        names = [f"m{i}" for i in range(members)]
        for name in names:
            store.append(entry("c1", State.APPLIED, member=name))
        with queries() as sent:
            fleet = store.latest_members("p", names)
        assert all(set(fleet[name]) == {"c1"} for name in names)
        costs.append(len(sent))
    assert costs == [1, 1], costs


def test_member_leases_are_separate_and_read_together(lease_backend: Backend) -> None:
    leases = lease_backend.lease
    a = leases.acquire(audit_key("p", "acme"), "run-a", 60)
    b = leases.acquire(audit_key("p", "globex"), "run-b", 60)
    assert a is not None and b is not None  # one member's lease never blocks another
    assert leases.acquire(audit_key("p", "acme"), "run-c", 60) is None
    if lease_backend.store is not None:  # a fenced append under the member's own lease
        lease_backend.store.append(entry("c1", member="acme"), fence=Fence(audit_key("p", "acme"), "run-a", a.token))
    held = leases.current_many([audit_key("p", m) for m in ("acme", "globex", "initech")])  # type: ignore[attr-defined]
    assert {key: info.owner for key, info in held.items()} == {"p@acme": "run-a", "p@globex": "run-b"}
