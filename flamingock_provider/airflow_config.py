"""Read Airflow's configuration: the executor that runs a pipeline's tasks.

Inside Airflow (a worker, the scheduler) the answer is Airflow's own ``conf``. The CLI answers
without the ~2 s Airflow import when it can, resolving the setting the way Airflow does:
``AIRFLOW__CORE__EXECUTOR``, then ``[core] executor`` in ``$AIRFLOW_CONFIG`` (default
``$AIRFLOW_HOME/airflow.cfg``), then Airflow's default, LocalExecutor.
"""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path

from flamingock_provider.core.model import Pipeline
from flamingock_provider.core.placement import check_audit_placement, distributed_executors
from flamingock_provider.exceptions import EmbeddedStoreError, ValidationIssue

DEFAULT_EXECUTOR = "LocalExecutor"


def configured_executor() -> str:
    """Airflow's ``[core] executor`` setting as this process sees it."""
    if "airflow.configuration" in sys.modules:
        return airflow_executor()
    env = os.environ.get("AIRFLOW__CORE__EXECUTOR")
    if env is not None:
        return env
    value = _cfg_executor()
    return value if value is not None else DEFAULT_EXECUTOR


def airflow_executor() -> str:
    """Airflow's ``[core] executor`` read through Airflow itself (in a task: already imported, free)."""
    from airflow.configuration import conf

    return str(conf.get("core", "executor", fallback=DEFAULT_EXECUTOR))


def airflow_cfg() -> configparser.ConfigParser | None:
    """``$AIRFLOW_CONFIG`` (default ``$AIRFLOW_HOME/airflow.cfg``) parsed, None when there is none.

    Raises ``configparser.Error`` when the file cannot be parsed: the caller then lets Airflow read it.
    """
    home = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
    cfg_path = Path(os.environ.get("AIRFLOW_CONFIG", home / "airflow.cfg"))
    if not cfg_path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(cfg_path)
    return parser


def _cfg_executor() -> str | None:
    try:
        parser = airflow_cfg()
    except configparser.Error:
        return airflow_executor()  # let Airflow read what we cannot
    value = parser.get("core", "executor", fallback="").strip() if parser is not None else ""
    return value or None


def placement_notes(pipeline: Pipeline) -> list[ValidationIssue]:
    """A warning when Airflow's executor is distributed and the pipeline keeps the embedded audit store."""
    executor = configured_executor()
    try:
        check_audit_placement(pipeline, executor)
    except EmbeddedStoreError as err:
        names = ", ".join(distributed_executors(executor))
        return [ValidationIssue(err.pipeline_yaml, f"Airflow's executor is {names} (not local): {err}")]
    return []
