"""Profile a task's ``execute()`` inside a running Airflow, behind ``FLAMINGOCK_PROFILE_DIR``.

Set ``FLAMINGOCK_PROFILE_DIR`` in the worker's environment and every Flamingock apply task writes
a cProfile dump of its ``execute()`` there (``<dag>.<task>.<try>.<pid>.prof``); read it with
``python -m pstats``. Unset (the default) it costs one environment lookup.
"""

from __future__ import annotations

import cProfile
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROFILE_DIR = "FLAMINGOCK_PROFILE_DIR"


@contextmanager
def profiled(name: str) -> Iterator[None]:
    """Profile the block into ``$FLAMINGOCK_PROFILE_DIR/<name>.<pid>.prof`` when the variable is set."""
    folder = os.environ.get(PROFILE_DIR)
    if not folder:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        Path(folder).mkdir(parents=True, exist_ok=True)
        profile.dump_stats(str(Path(folder) / f"{name}.{os.getpid()}.prof"))
