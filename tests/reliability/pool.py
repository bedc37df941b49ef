"""The test side of the fork server in ``runner.py``: start ``flamingock`` processes, wait, signal them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability.runner import GO, PAUSE_ENV, READY, REPO, SIGNALS_ENV

START_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 300.0


def runner_env(home: Path) -> dict[str, str]:
    """The environment every runner starts from: this one without connections or homes of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "FLAMINGOCK_", "AIRFLOW_HOME"))}
    env.update(
        AIRFLOW_HOME=str(home / "airflow"),
        FLAMINGOCK_HOME=str(home / "flamingock"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    return env


class RunnerError(AssertionError):
    """A runner did not do what the scenario needs (no start, no pause, no exit in time)."""


@dataclass
class Runner:
    """One ``flamingock`` process forked by the pool."""

    pool: RunnerPool
    pid: int
    argv: list[str]
    out_path: Path
    err_path: Path
    signals: Path | None = None

    def wait(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        """Wait for the exit code (negative: the signal that killed it)."""
        return self.pool.wait_exit(self.pid, timeout, self.describe)

    @property
    def returncode(self) -> int | None:
        return self.pool.exit_status(self.pid)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def json(self) -> Any:
        return json.loads(self.stdout)

    def send(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_paused(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until the runner stands at its pause point."""
        assert self.signals is not None, "started without a pause point"
        deadline = time.monotonic() + timeout
        while not (self.signals / READY).exists():
            if self.returncode is not None:
                raise RunnerError(f"{self.describe()} exited {self.returncode} before its pause point")
            if time.monotonic() > deadline:
                raise RunnerError(f"{self.describe()} did not reach its pause point in {timeout:.0f}s")
            time.sleep(0.01)

    def resume(self) -> None:
        """Let a paused runner go on (it notices within 10 ms of running again)."""
        assert self.signals is not None
        (self.signals / GO).write_text("go")

    def kill(self) -> int:
        """SIGKILL and reap; return the exit status (-9)."""
        self.send(signal.SIGKILL)
        return self.wait()

    def describe(self) -> str:
        tail = self.stderr[-1500:] if self.err_path.exists() else ""
        return f"runner pid {self.pid} `flamingock {' '.join(self.argv)}` (stderr tail: {tail!r})"


@dataclass
class RunnerPool:
    """A fork server process and the runners it started; ``close()`` kills what is left."""

    workdir: Path
    base_env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    started: int = 0
    _exits: dict[int, int] = field(default_factory=dict)
    _pids: list[int] = field(default_factory=list)
    _live: set[int] = field(default_factory=set)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _spawn_lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RunnerPool:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**self.base_env, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.runner"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.workdir / "fork_server.log").open("wb"),
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first.startswith(b'{"ready"'):
            raise RunnerError(f"the fork server did not start: {first!r}; see {self.workdir / 'fork_server.log'}")
        threading.Thread(target=self._read_replies, name="runner-pool", daemon=True).start()
        return self

    def _read_replies(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            message = json.loads(raw)
            with self._cond:
                if "pid" in message:
                    self._pids.append(int(message["pid"]))
                else:
                    self._exits[int(message["exited"])] = int(message["status"])
                    self._live.discard(int(message["exited"]))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: Path | None = None,
        pause: str | None = None,
    ) -> Runner:
        """Start ``flamingock ARGV`` with ``env`` (plus the pool's base environment)."""
        with self._spawn_lock:
            self.started += 1
            name = f"r{self.started:05d}"
            folder = self.workdir / "runs" / name
            folder.mkdir(parents=True)
            full_env = {**self.base_env, **env}
            signals = None
            if pause is not None:
                signals = folder / "signals"
                signals.mkdir()
                full_env.update({PAUSE_ENV: pause, SIGNALS_ENV: str(signals)})
            request = {
                "argv": list(argv),
                "env": full_env,
                "cwd": str(cwd or self.workdir),
                "stdout": str(folder / "stdout"),
                "stderr": str(folder / "stderr"),
            }
            pid = self._request(request)
        return Runner(self, pid, list(argv), folder / "stdout", folder / "stderr", signals)

    def _request(self, request: dict[str, Any]) -> int:
        assert self.process is not None and self.process.stdin is not None, "the fork server is not running"
        with self._cond:
            seen = len(self._pids)
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
            if not self._cond.wait_for(lambda: len(self._pids) > seen, timeout=START_TIMEOUT_S):
                raise RunnerError("the fork server did not start a runner in time")
            pid = self._pids[seen]
            if pid not in self._exits:
                self._live.add(pid)
            return pid

    def exit_status(self, pid: int) -> int | None:
        with self._cond:
            return self._exits.get(pid)

    def wait_exit(self, pid: int, timeout: float, describe: Any) -> int:
        with self._cond:
            if not self._cond.wait_for(lambda: pid in self._exits, timeout=timeout):
                raise RunnerError(f"{describe()} did not exit within {timeout:.0f}s")
            return self._exits[pid]

    def run(self, argv: Sequence[str], env: Mapping[str, str], **options: Any) -> Runner:
        """Start a runner and wait for its exit."""
        runner = self.spawn(argv, env, **options)
        runner.wait()
        return runner

    def close(self) -> None:
        with self._cond:
            live = list(self._live)
        for pid in live:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
        process, self.process = self.process, None
        if process is not None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
