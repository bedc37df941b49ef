"""Read Airflow's configuration: the executor that runs a pipeline's tasks.

Inside Airflow (a worker, the scheduler) the answer is Airflow's own ``conf``. The CLI answers
without the ~2 s Airflow import when it can, resolving the setting the way Airflow does:
``AIRFLOW__CORE__EXECUTOR``, then ``[core] executor`` in ``$AIRFLOW_CONFIG`` (default
``$AIRFLOW_HOME/airflow.cfg``), then Airflow's default, LocalExecutor.
"""

from __future__ import annotations

import os
import re
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


def airflow_cfg_value(section: str, option: str) -> str:
    """One option of ``$AIRFLOW_CONFIG`` (default ``$AIRFLOW_HOME/airflow.cfg``); '' when absent or no file."""
    home = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
    cfg_path = Path(os.environ.get("AIRFLOW_CONFIG", home / "airflow.cfg"))
    try:
        text = cfg_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return configured_value(text, section, option)


_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")
_OPTION = re.compile(r"^([^=:\s][^=:]*?)\s*[=:]\s*(.*)$")


def configured_value(cfg_text: str, section: str, option: str) -> str:
    """Return one option of an ini text as configparser reads it (stripped; '' when absent).

    A line scan: Airflow's generated airflow.cfg (~1,500 lines) costs configparser ~15 ms, paid by
    every task that opens a target from an ``AIRFLOW_CONN_*`` variable.
    """
    current, found, reading = "", "", False
    for raw in cfg_text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if raw[:1].isspace():  # a continuation line belongs to the option above it
            found = f"{found}\n{line}".strip() if reading else found
            continue
        header = _SECTION.match(line)
        match = _OPTION.match(line) if header is None else None
        current = header.group(1).strip() if header is not None else current
        reading = current == section and match is not None and match.group(1).strip().lower() == option
        if reading and match is not None:
            found = match.group(2).strip()
    return found


def _cfg_executor() -> str | None:
    return airflow_cfg_value("core", "executor") or None


def placement_notes(pipeline: Pipeline) -> list[ValidationIssue]:
    """A warning when Airflow's executor is distributed and the pipeline keeps the embedded audit store."""
    executor = configured_executor()
    try:
        check_audit_placement(pipeline, executor)
    except EmbeddedStoreError as err:
        names = ", ".join(distributed_executors(executor))
        return [ValidationIssue(err.pipeline_yaml, f"Airflow's executor is {names} (not local): {err}")]
    return []
