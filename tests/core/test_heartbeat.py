"""The lease heartbeat: one thread at most even when a store call hangs; a failed beat says why."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

import pytest

from flamingock_provider.core.lease import Lease
from flamingock_provider.core.model import LeaseInfo, LockConfig


class FakeBackend:
    """An in-memory lease backend whose ``extend`` can hang or fail on demand."""

    def __init__(self) -> None:
        self.release_hang = threading.Event()
        self.hang = False
        self.fail: Exception | None = None
        self.extends = 0

    def _info(self, owner: str, token: int) -> LeaseInfo:
        now = datetime.now(timezone.utc)
        return LeaseInfo("p", owner, token, now, now)

    def acquire(self, key: str, owner: str, ttl_s: float) -> LeaseInfo | None:
        return self._info(owner, 1)

    def extend(self, key: str, owner: str, token: int, ttl_s: float) -> LeaseInfo | None:
        self.extends += 1
        if self.hang:
            self.release_hang.wait(30)
        if self.fail is not None:
            raise self.fail
        return self._info(owner, token)

    def release(self, key: str, owner: str, token: int) -> bool:
        return True

    def current(self, key: str) -> LeaseInfo | None:
        return None

    def force_release(self, key: str) -> LeaseInfo | None:
        return None


def heartbeats() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("flamingock-heartbeat-") and t.is_alive()]


def test_a_hung_store_call_never_doubles_the_heartbeat_thread() -> None:
    backend = FakeBackend()
    lease = Lease(backend, "p", "me", LockConfig(lease_seconds=0.3))
    lease.try_acquire()
    backend.hang = True
    try:
        with lease.heartbeat():
            while backend.extends == 0:  # the beat is now stuck inside extend()
                threading.Event().wait(0.01)
        for _ in range(3):  # every later block finds the stuck thread alive and reuses it
            with lease.heartbeat():
                assert len(heartbeats()) == 1
        assert backend.extends == 1
    finally:
        backend.release_hang.set()
    for thread in heartbeats():
        thread.join(5)
    assert heartbeats() == []


def test_a_failed_beat_logs_the_store_error(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend()
    lease = Lease(backend, "p", "me", LockConfig(lease_seconds=0.3))
    lease.try_acquire()
    backend.fail = ConnectionError("redis at 127.0.0.1:1 refused the connection")
    with caplog.at_level(logging.WARNING, logger="flamingock"), lease.heartbeat():
        while not lease.last_heartbeat_error:
            threading.Event().wait(0.01)
    assert "ConnectionError: redis at 127.0.0.1:1 refused the connection" in lease.last_heartbeat_error
    assert "redis at 127.0.0.1:1 refused the connection" in caplog.text and "heartbeat of the lease of p" in caplog.text


def test_nested_heartbeats_share_one_thread() -> None:
    backend = FakeBackend()
    lease = Lease(backend, "p", "me", LockConfig(lease_seconds=60))
    lease.try_acquire()
    with lease.heartbeat(), lease.heartbeat():
        assert len(heartbeats()) == 1
    for thread in heartbeats():
        thread.join(5)
    assert heartbeats() == []
