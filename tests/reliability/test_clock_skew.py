"""Clock skew (issue 8, item 4): runners whose clocks differ by ±30 s never hold the lease together.

Each runner process gets its own clock (``FLAMINGOCK_TEST_CLOCK_SKEW``, applied to ``time.time`` in
that process only by ``runner.py``). MongoDB and Redis compare lease expiry on the server's clock, so
client clocks cannot matter: a 4 s lease, outlasted by the run (the heartbeat extends it), stays
exclusive. SQLite and DynamoDB compare expiry on each runner's own clock: they stay exclusive when
``lease_seconds`` exceeds 1.5 times the spread of the clocks (here 150 s for a 60 s spread); the
last test shows what a shorter lease risks — and that the fence still refuses the stale holder.

The first test races skewed runners; the standoffs pin the order down: a holder whose clock is 30 s
behind stands still (heartbeating) between units while a runner 30 s ahead polls for its lease.
"""

from __future__ import annotations

from tests.reliability.backends import Backend
from tests.reliability.helpers import Counts
from tests.reliability.pool import RunnerPool
from tests.reliability.scenarios import SHORT_LEASE_S, skew, skew_lease, skew_standoff


def test_runners_with_skewed_clocks_never_hold_the_lease_together(
    runner_pool: RunnerPool, backend: Backend, scale: Counts
) -> None:
    tally = skew(runner_pool, backend, scale)
    assert tally.runs == scale.skewed
    tally.assert_clean()


def test_a_runner_ahead_never_takes_over_a_live_lease(runner_pool: RunnerPool, backend: Backend) -> None:
    tally, took_over = skew_standoff(runner_pool, backend, skew_lease(backend))
    assert not took_over
    tally.assert_clean()


def test_a_host_clock_lease_shorter_than_the_skew_is_taken_over_but_fenced(
    runner_pool: RunnerPool, backend: Backend
) -> None:
    """The limit: SQLite and DynamoDB judge expiry on the runner's clock, so a 4 s lease under ±30 s of
    skew looks expired to the runner ahead, which takes it over from a live holder. The fence still
    holds: the holder's next step is refused, no unit is applied twice. (The holder stood between units
    here; a unit already running when the lease is taken could overlap: keep lease_seconds above 1.5 x
    the spread of the clocks.)
    Server clocks (MongoDB, Redis) make the same standoff end without a takeover."""
    tally, took_over = skew_standoff(runner_pool, backend, SHORT_LEASE_S)
    assert took_over is backend.host_clock
    tally.assert_clean()
