"""The hook: a pipeline folder plus the audit store and lease backend its ``pipeline.yaml`` names.

Nothing is opened when the hook is built; :meth:`FlamingockHook.workspace` opens the store (and the
lease backend) for one task through the composition root (:mod:`flamingock_provider.core.workspace`),
and closes them after. The pipeline comes from the parse cache (:mod:`~flamingock_provider.core.pipeline_cache`),
so a task's worker, which has just parsed the DAG file, does not parse the folder again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from flamingock_provider.airflow_config import airflow_executor
from flamingock_provider.core.audit import AuditStore
from flamingock_provider.core.model import Pipeline
from flamingock_provider.core.pipeline_cache import cached_pipeline
from flamingock_provider.core.placement import check_audit_placement
from flamingock_provider.core.workspace import Workspace, open_store, open_workspace


class FlamingockHook(BaseHook):
    """Open a pipeline's audit store and lease backend (the connections its pipeline.yaml names)."""

    hook_name = "Flamingock"

    def __init__(self, pipeline_dir: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline_dir = Path(pipeline_dir)

    @cached_property
    def pipeline(self) -> Pipeline:
        return cached_pipeline(self.pipeline_dir)

    def check_placement(self) -> None:
        """Refuse the embedded audit store under a distributed executor (SPEC §3), before anything opens it."""
        check_audit_placement(self.pipeline, airflow_executor())

    def get_conn(self) -> AuditStore:
        """Return the pipeline's audit store, opened; the caller closes it."""
        self.check_placement()
        return open_store(self.pipeline.audit)

    @contextmanager
    def workspace(self) -> Iterator[Workspace]:
        """Open the audit store and lease backend for one task; close them on exit."""
        self.check_placement()
        with open_workspace(self.pipeline_dir, pipeline=self.pipeline) as ws:
            yield ws
