"""Lost lease and fencing (issue 8, item 3), on every backend.

A holder is frozen with SIGSTOP past its 4 s lease; another runner takes the lease over with a higher
fencing token and finishes the pipeline; the frozen one, resumed with SIGCONT, exits 1 "lease lost"
without writing one more audit entry or touching a target (checked on the audit log and on the
ledger records, which carry the writer's pid and execution). Freeze points: between two units,
after a Python unit's STARTED entry but before its code runs, and (MongoDB, DynamoDB) inside a
TX_SEPARATE unit, where the resumed holder must be refused before its commit.
"""

from __future__ import annotations

import pytest

from tests.reliability.backends import Backend
from tests.reliability.helpers import Counts
from tests.reliability.pool import RunnerPool
from tests.reliability.scenarios import FREEZES, Freeze, fencing, freezes


@pytest.mark.parametrize("freeze", FREEZES[:2], ids=lambda f: f.name.replace(" ", "-"))
def test_a_frozen_holder_is_refused_after_a_takeover(
    runner_pool: RunnerPool, backend: Backend, scale: Counts, freeze: Freeze
) -> None:
    tally = fencing(runner_pool, backend, freeze, scale.takeovers)
    assert tally.takeovers == scale.takeovers
    tally.assert_clean()


def test_a_holder_frozen_inside_a_transaction_is_refused_before_its_commit(
    runner_pool: RunnerPool, backend: Backend, scale: Counts
) -> None:
    inside = freezes(backend)[2:]
    if not inside:
        pytest.skip(f"{backend.name}: a frozen SQLite write transaction holds the target's lock, so no takeover")
    tally = fencing(runner_pool, backend, inside[0], scale.takeovers)
    tally.assert_clean()
