"""Killed workers (issue 8, item 2): a runner SIGKILLed at random points inside units, on every backend.

The victim unit and the point are drawn from a seeded generator (the same draws every run): before or
after its write, or between its commit and its APPLIED entry; NON_TX, TX_SEPARATE or TX_SHARED;
``manual_intervention`` or ``always_retry``. The next run resumes correctly: a STARTED
``manual_intervention`` unit blocks with the exact ``flamingock fix`` command (which the test then runs
verbatim), ``always_retry`` re-applies, TX_SHARED leaves no trace, the marker reconciles TX_SEPARATE,
and nothing is ever applied twice.
"""

from __future__ import annotations

import zlib

from tests.reliability.backends import Backend
from tests.reliability.helpers import Counts
from tests.reliability.pool import RunnerPool
from tests.reliability.scenarios import kills


def test_a_killed_runner_is_resumed_without_applying_anything_twice(
    runner_pool: RunnerPool, backend: Backend, scale: Counts
) -> None:
    tally = kills(runner_pool, backend, scale, seed=zlib.crc32(backend.name.encode()))
    assert tally.kills == scale.kills
    tally.assert_clean()
