"""Shared fixtures: an isolated FLAMINGOCK_HOME/AIRFLOW_HOME per test, and pipeline-folder builders."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Real servers started on demand by session fixtures (each skips only when its binary is missing).
pytest_plugins = [
    "tests.fixtures.redis_server",
    "tests.fixtures.postgres_server",
    "tests.fixtures.mariadb_server",
    "tests.fixtures.sql_databases",
]

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


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
