"""Report a broken pipeline folder as an Airflow import error filed under the culprit file's path.

Airflow 3.3 has no public API for a DAG file to report an error about another file. Its importer
(``airflow/dag_processing/importers/python_importer.py``) collects errors in a ``DagImportResult``
whose entries are keyed by file path, and keeps the file's other DAGs. While a DAG file is being
imported that result is a local of ``import_file`` on the call stack: we add our errors to it, keyed
by the culprit file relative to the bundle, so only the broken pipeline shows as broken. Filed
under the loader file instead, the error would mark every pipeline's DAG of that file broken.

Guarded: when the importer is not found (another Airflow version, a plain import), the error is
logged and emitted as a warning, which Airflow also records for the file. Such errors are cleared
at each bundle refresh (``[dag_processor] refresh_interval``) and come back at the next parse
while the folder stays broken.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("flamingock")


class BrokenPipelineWarning(UserWarning):
    """A pipeline folder is invalid; its DAG was not built."""


def report_broken_pipeline(folder: Path, dag_id: str, issues: Iterable[tuple[str, str]]) -> bool:
    """File one import error per culprit file of ``folder``; True when Airflow's importer took them."""
    by_file: dict[str, list[str]] = {}
    for file, message in issues:
        by_file.setdefault(file, []).append(message)
    header = f"Flamingock pipeline folder {folder.name!r} is invalid, so DAG {dag_id!r} was not built"
    importer = _current_import()
    for file, messages in by_file.items():
        path = folder / file if file else folder
        text = f"{header}:\n" + "\n".join(f"  {file or folder.name}: {m}" for m in messages)
        log.error("%s", text)
        if importer is None or not _add_error(importer, path, text):
            warnings.warn(text, BrokenPipelineWarning, stacklevel=2)
            importer = None
    return importer is not None


def _current_import() -> tuple[Any, Path | None] | None:
    """Return (the DagImportResult being filled, the bundle path) from the call stack, if any."""
    try:
        from airflow.dag_processing.importers.base import DagImportResult
    except ImportError:
        return None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "import_file":
            local = frame.f_locals
            result = local.get("result")
            if isinstance(result, DagImportResult):
                bundle = local.get("bundle_path")
                return result, Path(bundle) if bundle else None
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _add_error(importer: tuple[Any, Path | None], path: Path, text: str) -> bool:
    try:
        from airflow.dag_processing.importers.base import DagImportError

        result, bundle = importer
        key = str(path)
        if bundle is not None:
            try:
                key = str(path.resolve().relative_to(bundle.resolve()))
            except ValueError:
                key = str(path)
        result.errors.append(DagImportError(file_path=key, message=text, error_type="flamingock"))
        return True
    except Exception:  # never let error reporting break the other pipelines
        log.exception("could not file the import error for %s", path)
        return False
