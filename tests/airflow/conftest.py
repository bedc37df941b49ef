"""A real Airflow for the tests in this folder: a temp AIRFLOW_HOME, a DAGs folder with the loader.

Airflow reads its configuration when it is first imported, so the environment is set when this
file is imported (pytest collects ``tests/airflow`` before the other test folders). The metadata
DB is migrated once per session. Every pipeline a test writes lives under the session's
``dags/changes/`` and is removed after the test.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_AIRFLOW_LOADED = "airflow.settings" in sys.modules
SESSION_ROOT = Path(tempfile.mkdtemp(prefix="flamingock-airflow-tests-"))
AIRFLOW_HOME = SESSION_ROOT / "airflow_home"
DAGS_FOLDER = SESSION_ROOT / "dags"
CHANGES = DAGS_FOLDER / "changes"
REPO = Path(__file__).resolve().parents[2]

if not _AIRFLOW_LOADED:
    os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
atexit.register(shutil.rmtree, SESSION_ROOT, True)


def _write_dags_folder() -> None:
    CHANGES.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dags" / "flamingock_dags.py", DAGS_FOLDER / "flamingock_dags.py")
    shutil.copy(REPO / "dags" / ".airflowignore", DAGS_FOLDER / ".airflowignore")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the session's metadata DB once; return the DAGs folder."""
    if _AIRFLOW_LOADED and os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") != str(DAGS_FOLDER):
        pytest.skip("Airflow was imported before tests/airflow set its environment; run tests/airflow first")
    _write_dags_folder()
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return DAGS_FOLDER


@pytest.fixture
def changes(airflow_db: Path) -> Iterator[Path]:
    """The session's changes folder; pipelines written there during the test are removed after it."""
    before = set(CHANGES.iterdir())
    yield CHANGES
    for entry in set(CHANGES.iterdir()) - before:
        shutil.rmtree(entry, ignore_errors=True)
