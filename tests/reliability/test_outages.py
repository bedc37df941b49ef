"""Store outages (issue 8, item 5): the audit or lease store goes down in the middle of a run.

The run stands between two units (a pause point) when the store goes down: the SQLite audit file
locked EXCLUSIVE by another process past the busy timeout, SecantusDB killed, the moto server
stopped, Redis stopped. The run exits 1 with a ``FAILED:`` line naming the store (the first failure,
not the release that fails after it), no unit is recorded APPLIED that is not in its target (nor the
reverse), and once the store is back the next run completes.

The SQLite run waits out the store's 60 s busy timeout, so ``make test`` checks the store's own
reaction to the lock (with a 0.5 s busy timeout) and ``make reliability`` runs the whole scenario.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider.core.model import TargetConfig
from flamingock_provider.exceptions import StoreError
from flamingock_provider.stores.sqlite import SqliteStore
from tests.reliability.backends import Backend
from tests.reliability.helpers import Counts, full_mode
from tests.reliability.outages import SqliteLock, outage_for
from tests.reliability.pool import RunnerPool
from tests.reliability.scenarios import outage
from tests.reliability.servers import Servers


def test_a_store_outage_fails_the_run_clearly_and_the_next_run_completes(
    runner_pool: RunnerPool, backend: Backend, servers: Servers, scale: Counts
) -> None:
    if backend.name == "sqlite" and not full_mode():
        pytest.skip("waits out SQLite's 60 s busy timeout: run by `make reliability` (FLAMINGOCK_RELIABILITY_FULL=1)")
    tally = outage(runner_pool, backend, outage_for(backend, servers), scale.outages)
    assert tally.outages == scale.outages
    tally.assert_clean()


def test_a_locked_sqlite_audit_store_fails_every_write_with_a_store_error(tmp_path: Path) -> None:
    """Lease writes and the begin of a TX_SHARED unit (the store's own transaction) alike."""
    path = tmp_path / "audit.db"
    store = SqliteStore(path, conn_id="rel_audit", busy_timeout_s=0.5)
    lock = SqliteLock(path, hold_s=120)
    lock.lock()
    try:
        shared = store.shared_target(TargetConfig("shared", "rel_audit"))
        assert shared is not None
        for write in (lambda: store.acquire("p", "owner", 10), lambda: store.force_release("p"), shared.begin):
            with pytest.raises(StoreError, match=f"audit store {str(path)!r} failed: database is locked"):
                write()
    finally:
        lock.unlock(now=True)
    assert store.acquire("p", "owner", 10) is not None  # back once the lock is gone
    store.close()
