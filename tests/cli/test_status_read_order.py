"""SPIN's counterexample P5, as a real-process regression test: status never calls a running unit blocked.

``status`` reads without the lease. Read the other way round (the lease holder, then the audit state),
a runner that takes the lease between the two reads and writes STARTED shows its running unit as
blocked. The test makes exactly that interleaving happen: while ``status`` performs its first read, a
real ``flamingock apply`` process takes the lease and starts the unit.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from flamingock_provider.stores.sqlite import SqliteStore
from tests.conftest import VENV_BIN, WAREHOUSE_PIPELINE, write_tree


def gated_unit(gate: Path) -> str:
    return textwrap.dedent(f"""
        import os, time
        ID = "slow"
        AUTHOR = "t"
        TARGET = "warehouse"
        TRANSACTIONAL = False

        def apply(ctx):
            deadline = time.time() + 60
            while not os.path.exists({str(gate)!r}) and time.time() < deadline:
                time.sleep(0.05)

        def rollback(ctx):
            pass
    """)


def test_status_taken_while_another_runner_starts_a_unit_never_says_blocked(
    tmp_path: Path, sqlite_target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = tmp_path / "gate"
    pipe = write_tree(tmp_path / "p", {"pipeline.yaml": WAREHOUSE_PIPELINE, "0001_slow.py": gated_unit(gate)})
    runner: list[subprocess.Popen[str]] = []
    real_latest, real_current = SqliteStore.latest, SqliteStore.current

    def start_runner_during_first_read() -> None:
        if runner:
            return
        proc = subprocess.Popen([str(VENV_BIN / "flamingock"), "apply", str(pipe)], env=os.environ.copy(), text=True)
        runner.append(proc)
        deadline = time.monotonic() + 60
        while not any(e["state"] == "STARTED" for e in commands.history(pipe)["entries"]):
            assert proc.poll() is None and time.monotonic() < deadline, "the other runner never started"
            time.sleep(0.05)

    def latest(self: SqliteStore, pipeline: str) -> Any:
        found = real_latest(self, pipeline)
        start_runner_during_first_read()
        return found

    def current(self: SqliteStore, key: str) -> Any:
        found = real_current(self, key)
        start_runner_during_first_read()
        return found

    monkeypatch.setattr(SqliteStore, "latest", latest)
    monkeypatch.setattr(SqliteStore, "current", current)
    try:
        doc = commands.status(pipe)
        [change] = doc["changes"]
        assert change["action"] in ("apply", "running"), change  # never "blocked", never a fix to follow
        assert change["fix"] is None
        monkeypatch.setattr(SqliteStore, "latest", real_latest)
        monkeypatch.setattr(SqliteStore, "current", real_current)
        [now] = commands.status(pipe)["changes"]
        assert now["action"] == "running" and now["state"] == "STARTED", now
    finally:
        gate.touch()
        for proc in runner:
            proc.wait(timeout=60)
    assert runner and runner[0].returncode == 0
    assert [c["state"] for c in commands.status(pipe)["changes"]] == ["APPLIED"]
