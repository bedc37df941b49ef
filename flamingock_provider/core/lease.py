"""The per-pipeline lease (distributed lock) with a fencing token, backend-agnostic.

A :class:`LeaseBackend` does single atomic conditional writes; :class:`Lease` adds waiting, the
heartbeat while a unit runs, and the local deadline that stops a runner whose lease may be gone.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn, Protocol

from flamingock_provider.core.model import LeaseInfo, LockConfig
from flamingock_provider.exceptions import LeaseLostError, LockTimeoutError

Clock = Callable[[], float]
log = logging.getLogger("flamingock")


class LeaseBackend(Protocol):
    """Atomic lease operations. Every call is one conditional write or one read."""

    def acquire(self, key: str, owner: str, ttl_s: float) -> LeaseInfo | None:
        """Take the lease if free, expired or held by ``owner``; increment the token. None if held."""

    def extend(self, key: str, owner: str, token: int, ttl_s: float) -> LeaseInfo | None:
        """Push the expiry out if ``owner`` still holds ``token``; None otherwise."""

    def release(self, key: str, owner: str, token: int) -> bool:
        """Free the lease if ``owner`` still holds ``token``; False otherwise."""

    def current(self, key: str) -> LeaseInfo | None:
        """Return the live holder, or None when free or expired."""

    def force_release(self, key: str) -> LeaseInfo | None:
        """Free the lease whoever holds it; return who held it."""


@dataclass(frozen=True)
class Fence:
    """Who must hold the lease for a bookkeeping write to be accepted."""

    key: str
    owner: str
    token: int


def cli_owner() -> str:
    """Return an owner id unique to this process: ``cli/<host>/<pid>/<random>``."""
    return f"cli/{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


class Lease:
    """One runner's hold on a pipeline's lease."""

    def __init__(
        self,
        backend: LeaseBackend,
        key: str,
        owner: str,
        config: LockConfig,
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.backend = backend
        self.key = key
        self.owner = owner
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self.token: int | None = None
        self._deadline = 0.0  # local monotonic time after which we may no longer hold it
        self._lost: str | None = None
        self._guard = threading.Lock()
        self.last_heartbeat_error: str | None = None
        self._beating = False
        self._beat_thread: threading.Thread | None = None
        self._wake = threading.Event()

    @property
    def ttl(self) -> float:
        return float(self.config.lease_seconds)

    @property
    def fence(self) -> Fence:
        if self.token is None:
            raise LeaseLostError(self.key, self.owner, -1, "never acquired")
        return Fence(self.key, self.owner, self.token)

    def try_acquire(self) -> LeaseInfo | None:
        started = self._clock()
        info = self.backend.acquire(self.key, self.owner, self.ttl)
        if info is not None:
            self._hold(info.token, started)
        return info

    def acquire(self, timeout_s: float | None = None, poke_s: float | None = None) -> LeaseInfo:
        """Wait for the lease; raise :class:`LockTimeoutError` naming the holder after the timeout."""
        timeout = self.config.wait_timeout_seconds if timeout_s is None else timeout_s
        poke = self.config.poke_interval_seconds if poke_s is None else poke_s
        begin = self._clock()
        while True:
            info = self.try_acquire()
            if info is not None:
                return info
            waited = self._clock() - begin
            if waited >= timeout:
                holder = self.backend.current(self.key)
                last = self.try_acquire() if holder is None else None  # freed at the last moment
                if last is not None:
                    return last
                raise LockTimeoutError(
                    self.key, holder.owner if holder else None, holder.expires_at if holder else None, waited
                )
            self._sleep(max(0.01, min(poke, timeout - waited)))

    def adopt(self, token: int) -> None:
        """Continue a lease acquired elsewhere (e.g. by the Airflow lock sensor) under ``token``."""
        self.token = token
        self.ensure()

    def ensure(self) -> None:
        """Verify owner and token and extend the lease; raise :class:`LeaseLostError` if not held."""
        token = self.fence.token
        started = self._clock()
        info = self.backend.extend(self.key, self.owner, token, self.ttl)
        if info is None:
            self._mark_lost("the store no longer shows this owner and token")
        self._hold(token, started)

    def verify(self) -> None:
        """Read the store and raise :class:`LeaseLostError` unless this owner and token still hold it."""
        self.check()
        holder = self.backend.current(self.key)
        if holder is None or holder.owner != self.owner or holder.token != self.token:
            found = f"held by {holder.owner!r} token {holder.token}" if holder else "free or expired"
            self._mark_lost(f"the store shows it {found}")

    def refresh(self) -> None:
        """Extend when a third of the lease has passed since the last extension; else check locally."""
        with self._guard:
            due = self._clock() >= self._deadline - self.ttl * 0.6
        self.ensure() if due else self.check()

    def check(self) -> None:
        """Raise :class:`LeaseLostError` without I/O when the lease may have lapsed."""
        with self._guard:
            lost = self._lost
            deadline = self._deadline
        if lost:
            raise LeaseLostError(self.key, self.owner, self.token or -1, lost)
        if self._clock() >= deadline:
            self._mark_lost("its lease expired before it was extended")

    def release(self) -> bool:
        """Release if still held; never raises for a lease that is already gone."""
        if self.token is None:
            return False
        released = self.backend.release(self.key, self.owner, self.token)
        self.token = None
        return released

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Extend the lease in the background while the block runs.

        Re-entrant, and one thread at most per lease: a heartbeat still stuck in a store call from an
        earlier block (a hung connection) is reused, never doubled.
        """
        with self._guard:
            nested = self._beating
            self._beating = True
            thread = self._beat_thread
            start = not nested and (thread is None or not thread.is_alive())
            if start:
                thread = self._beat_thread = threading.Thread(
                    target=self._beat, name=f"flamingock-heartbeat-{self.key}", daemon=True
                )
        if start and thread is not None:
            thread.start()
        if nested:
            yield
            return
        try:
            yield
        finally:
            with self._guard:
                self._beating = False
            self._wake.set()
            if thread is not None:
                thread.join(timeout=1)  # a thread stuck in a store call is left to finish on its own

    def _beat(self) -> None:
        try:
            while True:
                self._wake.wait(max(0.05, self.ttl / 3))
                with self._guard:
                    self._wake.clear()
                    if not self._beating:
                        return
                try:
                    self.ensure()
                except LeaseLostError:
                    return
                except Exception as err:  # a store hiccup: the local deadline decides
                    self.last_heartbeat_error = f"heartbeat failed: {type(err).__name__}: {err}"
                    log.warning(
                        "heartbeat of the lease of %s failed: %s: %s; retrying, and this runner stops before its "
                        "next change if the lease cannot be extended before it expires",
                        self.key,
                        type(err).__name__,
                        err,
                    )
        finally:
            with self._guard:
                if self._beat_thread is threading.current_thread():
                    self._beat_thread = None

    def _hold(self, token: int, started: float) -> None:
        with self._guard:
            self.token = token
            self._lost = None
            # The backend's expiry counts from a moment after `started`: stop a little earlier.
            self._deadline = started + self.ttl * 0.9

    def _mark_lost(self, why: str) -> NoReturn:
        with self._guard:
            self._lost = why
        raise LeaseLostError(self.key, self.owner, self.token or -1, why)
