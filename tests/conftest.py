"""Shared fixtures: an isolated FLAMINGOCK_HOME/AIRFLOW_HOME per test, and pipeline-folder builders."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Fixture plugins, one module each in tests/fixtures/. Real servers are session fixtures started on first
# use only (each skips when its binary or package is missing). airflow_env comes first: it sets Airflow's
# environment (a session AIRFLOW_HOME and DAGs folder) when imported, before anything imports Airflow.
pytest_plugins = [
    "tests.fixtures.airflow_env",
    "tests.fixtures.http_api",
    "tests.fixtures.kafka_server",
    "tests.fixtures.mongo_server",
    "tests.fixtures.moto_server",
    "tests.fixtures.redis_server",
    "tests.fixtures.statsd_server",
    "tests.fixtures.postgres_server",
    "tests.fixtures.mariadb_server",
    "tests.fixtures.sql_databases",
]

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


# Every test of these folders carries the folder's marker: `make test-fast` leaves them out.
FOLDER_MARKERS = {"e2e": "e2e", "reliability": "reliability"}
# Over ~10 s, in files edited on main right now (so marked here, not with a decorator there).
SLOW_ELSEWHERE = {"core/test_crash.py::test_lost_lease_stops_the_run_before_the_next_unit"}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests/e2e as ``e2e``, tests/reliability as ``reliability`` and SLOW_ELSEWHERE as ``slow``."""
    for item in items:
        try:
            relative = Path(str(item.path)).resolve().relative_to(TESTS)
        except ValueError:
            continue
        marker = FOLDER_MARKERS.get(relative.parts[0])
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))
        if f"{relative.as_posix()}::{item.name}" in SLOW_ELSEWHERE:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the embedded store and Airflow's home at the test's own folder."""
    home = tmp_path / "flamingock_home"
    monkeypatch.setenv("FLAMINGOCK_HOME", str(home))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    if "AIRFLOW_HOME" not in os.environ:
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    yield home


@pytest.fixture
def sqlite_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SQLite database reachable as the Airflow connection ``warehouse_db``."""
    db = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", f"sqlite:///{db}")
    return db


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Create ``files`` (relative path -> text) under ``root``; return ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def sql_unit(unit_id: str, apply: str, rollback: str | None = None, **extra: str) -> str:
    """YAML text of a ``sql`` unit."""
    lines = [f"id: {unit_id}", "author: tester", "template: sql", "apply:", f"  statements: {apply!r}"]
    if rollback is not None:
        lines += ["rollback:", f"  statements: {rollback!r}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


WAREHOUSE_PIPELINE = "targets:\n  warehouse: {conn_id: warehouse_db}\nlock: {poke_interval_seconds: 0.1}\n"


def apply_concurrently(pipe: Path, processes: int = 4) -> list[subprocess.CompletedProcess[str]]:
    """Start ``processes`` ``flamingock apply PIPE --json`` at once (this environment); wait for all of them."""
    procs = [
        subprocess.Popen(
            [str(VENV_BIN / "flamingock"), "apply", str(pipe), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=os.environ.copy(),
        )
        for _ in range(processes)
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done
