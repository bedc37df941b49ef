"""Concurrent `flamingock apply` processes: every unit applied exactly once, the lease released."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from flamingock_provider import commands
from tests.conftest import apply_concurrently, write_tree

UNITS = 12


def racing_pipeline(root: Path, extra_yaml: str = "") -> Path:
    files = {
        "pipeline.yaml": (
            "targets:\n  warehouse: {conn_id: warehouse_db}\n"
            "lock: {poke_interval_seconds: 0.05, wait_timeout_seconds: 120}\n" + extra_yaml
        ),
        "0000_ledger.yaml": "id: ledger\nauthor: t\ntemplate: sql\napply: {statements: 'CREATE TABLE ledger (unit TEXT)'}\n",
    }
    for i in range(1, UNITS + 1):
        # Non-transactional on purpose: a second apply would add a second ledger row.
        files[f"{i:04d}_u{i}.yaml"] = (
            f"id: u{i}\nauthor: t\ntemplate: sql\ntransactional: false\n"
            f"apply: {{statements: \"INSERT INTO ledger VALUES ('u{i}')\"}}\n"
        )
    return write_tree(root, files)


def assert_exactly_once(pipe: Path, db: Path, results: list[subprocess.CompletedProcess[str]]) -> None:
    assert all(r.returncode == 0 for r in results), [(r.returncode, r.stderr[-500:]) for r in results]
    with sqlite3.connect(db) as conn:
        rows = [r[0] for r in conn.execute("SELECT unit FROM ledger")]
    assert sorted(rows) == sorted(f"u{i}" for i in range(1, UNITS + 1))
    entries = commands.history(pipe)["entries"]
    applied = [e["change_id"] for e in entries if e["state"] == "APPLIED"]
    assert len(applied) == len(set(applied)) == UNITS + 1
    assert commands.status(pipe)["lock"] is None


def test_four_cli_processes_apply_each_unit_once(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = racing_pipeline(tmp_path / "race")
    assert_exactly_once(pipe, sqlite_target, apply_concurrently(pipe))


@pytest.mark.slow
def test_four_cli_processes_with_the_lease_in_redis(
    tmp_path: Path,
    sqlite_target: Path,
    redis_server,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REDIS_LOCKS", f"redis://127.0.0.1:{redis_server.port}/0")
    pipe = racing_pipeline(tmp_path / "race_redis", "")
    text = (pipe / "pipeline.yaml").read_text().replace("lock: {", "lock: {conn_id: redis_locks, ")
    (pipe / "pipeline.yaml").write_text(text)
    results = apply_concurrently(pipe)
    assert_exactly_once(pipe, sqlite_target, results)
    tokens = {e["lock_token"] for e in commands.history(pipe)["entries"]}
    assert len(tokens) >= 1 and None not in tokens
    assert redis_server.client().exists("flamingock_lock:{race_redis}") == 0
