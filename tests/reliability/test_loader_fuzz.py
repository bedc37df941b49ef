"""Hostile input, fuzzed (issue 8, item 6): random bytes and structures as a pipeline's files.

The loader never raises anything but its own validation error, stays under a time limit per example
(hypothesis' deadline) and a memory limit (tracemalloc's peak). Examples are derandomized: every
run tries the same inputs.
"""

from __future__ import annotations

from tests.reliability.fuzz import check_loader, loader_fuzz
from tests.reliability.helpers import Counts


def test_the_loader_returns_errors_for_any_input(scale: Counts) -> None:
    run, tried = loader_fuzz(scale.fuzz_examples)
    run()
    assert tried[0] >= scale.fuzz_examples // 2  # hypothesis may stop early only when it runs out of inputs


def test_known_nasty_inputs() -> None:
    nasty: dict[str, str | bytes] = {
        "pipeline.yaml": b"\xef\xbb\xbfid: x\n",  # a BOM is fine
        "0001_a.yaml": "a: " + "[" * 5000,  # deep nesting
        "0002_b.json": "[" * 100_000 + "]" * 100_000,
        "0003_c.py": "(" * 10_000,
        "01_stage/stage.yaml": "\x00\x01\x02",
        "0004_d.yaml": "id: x\nauthor: y\ntemplate: sql\napply: {statements: '\ud800'}\n",
    }
    check_loader(nasty)
