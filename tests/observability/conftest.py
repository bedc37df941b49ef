"""Observability tests: a real StatsD (UDP) server, and the Airflow fixtures of ``tests/airflow``.

Importing ``tests.airflow.conftest`` first sets up Airflow's environment (a temp AIRFLOW_HOME and
DAGs folder) before anything imports Airflow, as it does for ``tests/airflow``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.airflow.conftest import airflow_db, changes  # noqa: F401  (fixtures shared with tests/airflow)
from tests.fixtures.http_api import http_api_server  # noqa: F401


@dataclass
class StatsdServer:
    """A StatsD server on localhost that keeps every metric line it receives."""

    sock: socket.socket
    lines: list[str] = field(default_factory=list)
    guard: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def env(self) -> dict[str, str]:
        """Airflow's configuration that sends metrics here (prefix ``airflow``)."""
        return {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(self.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        }

    def serve(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except OSError:
                return
            with self.guard:
                self.lines += data.decode().splitlines()

    def received(self) -> list[str]:
        with self.guard:
            return list(self.lines)

    def clear(self) -> None:
        with self.guard:
            self.lines.clear()

    def wait_for(self, done: Callable[[list[str]], bool], timeout: float = 10.0) -> list[str]:
        """Wait until ``done(lines)`` holds (UDP gives no delivery receipt); return the lines."""
        deadline = time.monotonic() + timeout
        while not done(self.received()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received()


@pytest.fixture(scope="session")
def statsd_server() -> Iterator[StatsdServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    server = StatsdServer(sock)
    thread = threading.Thread(target=server.serve, name="statsd", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        sock.close()


@pytest.fixture
def statsd(statsd_server: StatsdServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdServer]:
    """Airflow's Stats of this process sending to ``statsd_server``, as a task runner sets it up."""
    pytest.importorskip("statsd", reason="Airflow's StatsD needs the statsd package (apache-airflow[statsd])")
    from airflow.sdk._shared.observability.metrics import stats as backend
    from airflow.sdk.observability.metrics import stats_utils

    for key, value in statsd_server.env.items():
        monkeypatch.setenv(key, value)
    saved = (backend._factory, backend._backend, backend._export_legacy_names)
    backend.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    statsd_server.clear()
    try:
        yield statsd_server
    finally:
        backend._factory, backend._backend, backend._export_legacy_names = saved
