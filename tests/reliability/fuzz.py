"""A hypothesis fuzz of the loader: random bytes and random structures written as a pipeline's files.

``validate_pipeline`` must return a report (errors, never an exception) and ``load_pipeline`` raise
nothing but :class:`PipelineValidationError`, within a bounded time (hypothesis' deadline) and
memory (the tracemalloc peak of each example).
"""

from __future__ import annotations

import json
import tempfile
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flamingock_provider.core.loader import load_pipeline, validate_pipeline
from flamingock_provider.core.pipeline_config import PIPELINE_KEYS, STAGE_KEYS
from flamingock_provider.core.python_unit import SETTINGS
from flamingock_provider.core.unit_parser import TEMPLATE_UNIT_KEYS
from flamingock_provider.exceptions import PipelineValidationError

MEMORY_LIMIT = 64 << 20  # bytes allocated at the peak of one example
DEADLINE = timedelta(seconds=10)
NAMES = (
    "pipeline.yaml",
    "0001_a.yaml",
    "0002_b.json",
    "0003_c.py",
    "_0004__d.yml",
    "01_stage/0005_e.yaml",
    "01_stage/stage.yaml",
    "02_other/0006_f.py",
    "files/x.sql",
    "0007_g.txt",
)
KEYS = sorted({*PIPELINE_KEYS, *STAGE_KEYS, *TEMPLATE_UNIT_KEYS, *SETTINGS, "conn_id", "statements", "file"})
PYTHON_BITS = ("ID = ", "AUTHOR = ", "def apply(ctx):\n    ", "def rollback(ctx, x):\n", "'x'", "42", "[", "(", "\n")

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=40,
)


def _dump(value: Any, as_json: bool) -> str:
    try:
        return json.dumps(value) if as_json else yaml.safe_dump(value)
    except (ValueError, TypeError, yaml.YAMLError):
        return repr(value)


structured = st.builds(_dump, values, st.booleans())
python_like = st.lists(st.sampled_from(PYTHON_BITS) | st.text(max_size=20), max_size=30).map("".join)
content = st.binary(max_size=2048) | structured | python_like | st.text(max_size=400)
pipelines = st.dictionaries(st.sampled_from(NAMES), content, min_size=1, max_size=6)


def check_loader(files: dict[str, str | bytes]) -> None:
    """Write ``files`` as a pipeline folder; validate and load it: errors only, in bounded memory."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fuzzed"
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        tracemalloc.start()
        try:
            report = validate_pipeline(root)
            try:
                load_pipeline(root)
            except PipelineValidationError as err:
                assert err.issues == report.errors
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (report.pipeline is None) == bool(report.errors)
    assert all(isinstance(issue.message, str) and issue.message for issue in report.errors)
    assert peak < MEMORY_LIMIT, f"validating used {peak:,} bytes at its peak"


def loader_fuzz(max_examples: int) -> tuple[Callable[[], None], list[int]]:
    """A runnable fuzz of ``max_examples`` deterministic examples, and a counter of examples tried."""
    tried = [0]

    @settings(
        max_examples=max_examples,
        deadline=DEADLINE,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(pipelines)
    def run(files: dict[str, str | bytes]) -> None:
        tried[0] += 1
        check_loader(files)

    return run, tried
