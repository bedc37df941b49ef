"""``build_dags``: one DAG per pipeline folder under a changes folder, for a two-line DAG file.

In a worker (and in each reschedule poke) Airflow re-imports the DAG file for one DAG only:
``get_parsing_context().dag_id`` names it, and only that pipeline is built. A broken folder
becomes an import error of its own (see :mod:`.import_errors`); the other pipelines still load.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, get_parsing_context

from flamingock_provider.core.loader import discover_pipelines
from flamingock_provider.dag_factory.builder import build_dag, dag_id_for
from flamingock_provider.dag_factory.import_errors import report_broken_pipeline
from flamingock_provider.exceptions import PipelineValidationError
from flamingock_provider.operators._common import caller_folder

log = logging.getLogger("flamingock")


def build_dags(changes_root: str | os.PathLike[str], **dag_kwargs: Any) -> dict[str, DAG]:
    """Return ``{dag_id: DAG}`` for every pipeline folder under ``changes_root``.

    A relative ``changes_root`` is taken from the calling DAG file's folder. ``dag_kwargs`` go to
    every :func:`build_dag`. Use it as ``globals().update(build_dags(...))`` in a DAG file.
    """
    root = Path(changes_root)
    if not root.is_absolute():
        root = caller_folder() / root
    folders = discover_pipelines(root)
    wanted = get_parsing_context().dag_id
    if wanted:  # a worker (or a reschedule poke) needs one DAG: try the folder named after it first
        dags = _build_all(_only(folders, wanted), dag_kwargs)
        if wanted in dags:
            return {wanted: dags[wanted]}
    dags = _build_all(folders, dag_kwargs)
    return {wanted: dags[wanted]} if wanted in dags else dags


def _build_all(folders: list[Path], dag_kwargs: dict[str, Any]) -> dict[str, DAG]:
    dags: dict[str, DAG] = {}
    for folder in folders:
        dag = _build_one(folder, dag_kwargs)
        if dag is None:
            continue
        if dag.dag_id in dags:
            _duplicate(folder, dag.dag_id)
            continue
        dags[dag.dag_id] = dag
    return dags


def _only(folders: list[Path], dag_id: str) -> list[Path]:
    """The folder whose name gives ``dag_id`` (an ``id:`` in pipeline.yaml may differ: then all)."""
    return [f for f in folders if dag_id_for(f.name.lower().replace("-", "_")) == dag_id]


def _build_one(folder: Path, dag_kwargs: dict[str, Any]) -> DAG | None:
    dag_id = dag_id_for(folder.name.lower().replace("-", "_"))
    try:
        return build_dag(folder, **dag_kwargs)
    except PipelineValidationError as err:
        report_broken_pipeline(folder, dag_id, [(issue.file, issue.message) for issue in err.issues])
    except Exception as err:  # one pipeline's bug must not hide the others
        log.exception("building the DAG of %s failed", folder)
        report_broken_pipeline(folder, dag_id, [("", f"{type(err).__name__}: {err}")])
    return None


def _duplicate(folder: Path, dag_id: str) -> None:
    report_broken_pipeline(
        folder,
        dag_id,
        [
            (
                "pipeline.yaml",
                f"pipeline id gives DAG id {dag_id!r}, already built from another folder; set a unique 'id:'",
            )
        ],
    )
