"""Races (issue 8, item 1): N runners apply one pipeline at once, R times, on every backend.

Every unit is applied exactly once (audit entries and ledger records both counted), the lease ends
released, and every runner exits 0: the losers wait, then find nothing to do.
"""

from __future__ import annotations

from tests.reliability.backends import TX_SEPARATE, Backend, UnitSpec
from tests.reliability.helpers import Counts, verdict, write_pipeline
from tests.reliability.pool import RunnerPool
from tests.reliability.scenarios import race


def test_concurrent_runners_apply_every_unit_exactly_once(
    runner_pool: RunnerPool, backend: Backend, scale: Counts
) -> None:
    tally = race(runner_pool, backend, scale)
    assert tally.runs == scale.processes * scale.repeats
    tally.assert_clean()


def test_two_pipelines_racing_for_a_new_marker_collection_fail_cleanly_then_apply(
    runner_pool: RunnerPool, mongo_backend: Backend
) -> None:
    """Two pipelines (two leases) commit TX_SEPARATE units into one fresh MongoDB database: the first
    creates the marker collection, the other's marker write then conflicts. That run fails with an
    error naming the change and the target (not an "unexpected" one), nothing is committed, and its
    next run applies the unit."""
    specs = [UnitSpec("u1", TX_SEPARATE)]
    first, second = (
        write_pipeline(mongo_backend, mongo_backend.root, specs, prefix=name, lease_s=30)
        for name in ("mark_a", "mark_b")
    )
    waiting = runner_pool.spawn(["apply", str(first), "--json"], mongo_backend.env, pause="u1:after-write")
    waiting.wait_paused()
    assert runner_pool.run(["apply", str(second), "--json"], mongo_backend.env).wait() == 0
    waiting.resume()
    assert waiting.wait() == 1, waiting.describe()
    assert "FAILED: change 'u1': writing its marker in target 'main' failed" in waiting.stderr, waiting.describe()
    assert mongo_backend.ledger(first.name) == {}
    rerun = runner_pool.run(["apply", str(first), "--json"], mongo_backend.env)
    assert rerun.wait() == 0 and rerun.json()["applied"] == ["u1"], rerun.describe()
    for pipe in (first, second):
        verdict(mongo_backend, pipe.name, ["u1"]).assert_clean()
