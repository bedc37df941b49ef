"""`make airflow` (scripts/airflow.sh): a local Airflow on the examples that a person opens, then stops with Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.harness import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def read_until(process: subprocess.Popen[str], pattern: str, timeout: float) -> dict[str, str]:
    """Read the script's output until a line matches ``pattern``; return every ``Name: value`` line seen."""
    assert process.stdout is not None
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"scripts/airflow.sh ended early ({process.poll()}); said: {seen}")
        if match := re.match(r"^([A-Z][\w ]+):\s+(\S.*)$", line.strip()):
            seen[match.group(1)] = match.group(2)
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f}s; said: {seen}")


def test_make_airflow_serves_the_view_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FLAMINGOCK"))}
    env.update(PY=sys.executable, FLAMINGOCK_AIRFLOW_ROOT=str(tmp_path / "airflow"))
    process = subprocess.Popen(
        ["bash", str(REPO / "scripts" / "airflow.sh")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # as a terminal's foreground job: Ctrl-C signals the whole group
    )
    try:
        said = read_until(process, r"Ctrl-C stops", timeout=300)
        view, password = said["Flamingock view"], said["Sign in as"].removeprefix("admin / ")
        base = said["Airflow"].rstrip("/")
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        page = httpx.get(f"{base}/flamingock/", headers=headers, timeout=60)
        assert page.status_code == 200 and "flamingock_warehouse" in page.text  # the example pipelines
        assert httpx.get(view, timeout=30).status_code == 200  # the UI route that frames the view
        children = psutil.Process(process.pid).children(recursive=True)
        assert any("airflow" in " ".join(c.cmdline()) for c in children)

        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=120) == 0
        assert process.stdout is not None and "stopped" in process.stdout.read()
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], [c.cmdline() for c in alive]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
