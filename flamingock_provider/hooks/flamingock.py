"""The hook: a pipeline folder plus the audit store and lease backend its ``pipeline.yaml`` names.

Nothing is opened when the hook is built; :meth:`FlamingockHook.workspace` opens the store (and
the lease backend) for one task and closes them after. Parsed pipelines are cached in memory by
content fingerprint (:mod:`.pipeline_cache`), so a task's worker, which has just parsed the DAG file,
does not parse the folder again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from flamingock_provider.commands import Workspace
from flamingock_provider.core.model import Pipeline
from flamingock_provider.hooks.pipeline_cache import cached_pipeline


class FlamingockHook(BaseHook):
    """Open a pipeline's audit store and lease backend (the connections its pipeline.yaml names)."""

    hook_name = "Flamingock"

    def __init__(self, pipeline_dir: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline_dir = Path(pipeline_dir)

    @cached_property
    def pipeline(self) -> Pipeline:
        return cached_pipeline(self.pipeline_dir)

    def get_conn(self) -> Any:
        """Return the pipeline's audit store, opened; the caller closes it."""
        from flamingock_provider.stores import open_store

        return open_store(self.pipeline.audit)

    @contextmanager
    def workspace(self) -> Iterator[Workspace]:
        """Open the audit store and lease backend for one task; close them on exit."""
        from flamingock_provider.stores import open_lease_backend

        store = self.get_conn()
        try:
            leases = open_lease_backend(self.pipeline.lock, store)
            yield Workspace(self.pipeline, str(self.pipeline_dir), store, leases)
        finally:
            store.close()
