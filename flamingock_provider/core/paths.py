"""Where flamingock keeps local files: ``$FLAMINGOCK_HOME``, by default ``$AIRFLOW_HOME/flamingock``."""

from __future__ import annotations

import os
from pathlib import Path


def flamingock_home() -> Path:
    """``$FLAMINGOCK_HOME``, else ``$AIRFLOW_HOME/flamingock``, else ``~/airflow/flamingock``."""
    home = os.environ.get("FLAMINGOCK_HOME")
    if home:
        return Path(home).expanduser()
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "flamingock"


def embedded_store_path() -> Path:
    """The embedded audit store: ``$FLAMINGOCK_HOME/audit.db``."""
    return flamingock_home() / "audit.db"
