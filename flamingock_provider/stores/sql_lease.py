"""The lease half of the SQL store: one row per lease key, conditional writes on the server's clock.

Acquire is one transaction: read the server's clock, lock the lease row (``SELECT ... FOR UPDATE``,
waiting at most LEASE_LOCK_WAIT_S), then one checked ``INSERT`` or ``UPDATE``. Before taking over an
expired lease, and on ``force_release`` (``unlock --force``), the previous holder's server connection
is ended (``pg_terminate_backend`` / ``KILL``): its open transaction can then neither block the next
runner nor commit after it. :class:`~flamingock_provider.stores.sql.SqlStore` mixes this in.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from flamingock_provider.core.model import LeaseInfo
from flamingock_provider.exceptions import StoreError
from flamingock_provider.stores.sql_schema import SqlDialect

log = logging.getLogger("flamingock.sql")
_T = TypeVar("_T")

LEASE_LOCK_WAIT_S = 5  # a lease write waits at most this long for a row lock; then "held", try again
TERMINATE_WAIT_S = 10.0


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class SqlLease(ABC):
    """Lease operations over the store's connections (``_tx``, ``_cursor``, ``_again`` come from the store)."""

    dialect: SqlDialect
    _lock: str
    _guard: threading.Lock
    _main_thread: int
    _main_pid: int | None

    @abstractmethod
    def _tx(self, what: str, conn: Any = None) -> AbstractContextManager[Any]:
        """A transaction on the store's connection (or ``conn``), errors translated for ``what``."""

    @abstractmethod
    def _cursor(self, what: str) -> AbstractContextManager[Any]:
        """A cursor outside any transaction, errors translated for ``what``."""

    @abstractmethod
    def _again(self, op: Callable[[], _T]) -> _T:
        """Run ``op``, retrying once on a connection the server dropped."""

    @abstractmethod
    def _conn(self) -> Any:
        """This thread's connection to the store's server."""

    def acquire(self, key: str, owner: str, ttl_s: float) -> LeaseInfo | None:
        return self._again(lambda: self._acquire(key, owner, ttl_s))

    def _acquire(self, key: str, owner: str, ttl_s: float) -> LeaseInfo | None:
        self._end_expired_holder(key, owner)
        try:
            with self._tx(f"acquire the lease of {key!r}") as cur:
                return self._acquire_in(cur, key, owner, ttl_s)
        except Held:
            return None

    def _acquire_in(self, cur: Any, key: str, owner: str, ttl_s: float) -> LeaseInfo | None:
        cur.execute(f"SELECT {self.dialect.now}")  # the server's clock, read once: acquired + ttl = expires
        now = cur.fetchone()[0]
        expires = now + timedelta(seconds=ttl_s)
        row = self._locked_row(cur, key, now)
        pid = self._pid()
        if row is None:
            try:
                cur.execute(
                    f"INSERT INTO {self._lock} (lease_key, owner, token, acquired_at, expires_at, backend_pid) "
                    "VALUES (%s, %s, 1, %s, %s, %s)",
                    (key, owner, now, expires, pid),
                )
            except Exception as err:
                if _is_duplicate(err):  # another runner inserted the first lease row just now: held
                    raise Held() from err
                raise
        else:
            holder, _, _, expired = row
            if holder is not None and holder != owner and not expired:
                return None
            cur.execute(
                f"UPDATE {self._lock} SET owner = %s, token = token + 1, acquired_at = %s, expires_at = %s, "
                "backend_pid = %s WHERE lease_key = %s",
                (owner, now, expires, pid, key),
            )
            self._checked(cur, f"take the lease of {key!r}")
        return self._read_lease(cur, key)

    def _locked_row(self, cur: Any, key: str, now: datetime) -> tuple[Any, ...] | None:
        """The lease row, locked until the transaction ends: (owner, token, backend_pid, expired)."""
        before, after = self.dialect.lock_wait(LEASE_LOCK_WAIT_S)
        cur.execute(before)
        try:
            cur.execute(
                f"SELECT owner, token, backend_pid, expires_at <= %s FROM {self._lock} WHERE lease_key = %s FOR UPDATE",
                (now, key),
            )
            row = cur.fetchone()
        except Exception as err:
            if _is_lock_timeout(err):
                raise Held() from err
            raise
        finally:
            if after:
                cur.execute(after)
        return None if row is None else tuple(row)

    def _end_expired_holder(self, key: str, owner: str) -> None:
        """Before taking over an expired lease, end its holder's connection (and any transaction it left open)."""
        with self._cursor(f"read the lease of {key!r}") as cur:
            cur.execute(
                f"SELECT owner, backend_pid FROM {self._lock} WHERE lease_key = %s AND owner IS NOT NULL "
                f"AND expires_at <= {self.dialect.now}",
                (key,),
            )
            row = cur.fetchone()
        if row is not None and row[0] != owner and row[1] is not None:
            self._terminate(int(row[1]), row[0])

    def _terminate(self, pid: int, holder: str) -> None:
        if pid in self._own_pids():
            return
        try:
            with self._cursor(f"end the connection of lease holder {holder!r}") as cur:
                cur.execute(self.dialect.terminate(), (pid,))
                if self.dialect.name == "postgres":
                    self._wait_gone(cur, pid)
        except StoreError as err:  # already gone (KILL of an unknown id), or not allowed: expiry still holds
            log.info("could not end connection %s of previous lease holder %s: %s", pid, holder, err)

    def _wait_gone(self, cur: Any, pid: int) -> None:
        deadline = time.monotonic() + TERMINATE_WAIT_S
        while time.monotonic() < deadline:
            cur.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
            if cur.fetchone() is None:
                return
            time.sleep(0.02)

    def _own_pids(self) -> set[int]:
        with self._guard:
            return {self._main_pid} if self._main_pid is not None else set()

    def _pid(self) -> int | None:
        """The connection id of the runner's thread: the one whose transactions a takeover must end."""
        if self._main_pid is None and threading.get_ident() == self._main_thread:
            self._conn()
        return self._main_pid

    def extend(self, key: str, owner: str, token: int, ttl_s: float) -> LeaseInfo | None:
        return self._again(lambda: self._extend(key, owner, token, ttl_s))

    def _extend(self, key: str, owner: str, token: int, ttl_s: float) -> LeaseInfo | None:
        with self._tx(f"extend the lease of {key!r}") as cur:
            cur.execute(
                f"UPDATE {self._lock} SET expires_at = {self.dialect.later('%s')}, backend_pid = %s "
                "WHERE lease_key = %s AND owner = %s AND token = %s",
                (ttl_s, self._pid(), key, owner, token),
            )
            if cur.rowcount != 1:
                return None
            return self._read_lease(cur, key)

    def release(self, key: str, owner: str, token: int) -> bool:
        return self._again(lambda: self._release(key, owner, token))

    def _release(self, key: str, owner: str, token: int) -> bool:
        with self._tx(f"release the lease of {key!r}") as cur:
            cur.execute(
                f"UPDATE {self._lock} SET owner = NULL, backend_pid = NULL, expires_at = {self.dialect.now} "
                "WHERE lease_key = %s AND owner = %s AND token = %s",
                (key, owner, token),
            )
            return bool(cur.rowcount == 1)

    def current(self, key: str) -> LeaseInfo | None:
        return self._again(lambda: self._current(key))

    def _current(self, key: str) -> LeaseInfo | None:
        with self._cursor(f"read the lease of {key!r}") as cur:
            cur.execute(
                f"SELECT lease_key, owner, token, acquired_at, expires_at, backend_pid FROM {self._lock} "
                f"WHERE lease_key = %s AND owner IS NOT NULL AND expires_at > {self.dialect.now}",
                (key,),
            )
            row = cur.fetchone()
        return None if row is None else _lease_info(row)

    def current_many(self, keys: Sequence[str]) -> Mapping[str, LeaseInfo]:
        """The live holders of ``keys`` in one query (a fleet's member leases)."""
        return self._again(lambda: self._current_many(keys)) if keys else {}

    def _current_many(self, keys: Sequence[str]) -> Mapping[str, LeaseInfo]:
        with self._cursor(f"read the leases of {len(keys)} fleet members") as cur:
            cur.execute(
                f"SELECT lease_key, owner, token, acquired_at, expires_at, backend_pid FROM {self._lock} "
                f"WHERE lease_key IN ({', '.join(['%s'] * len(keys))}) AND owner IS NOT NULL "
                f"AND expires_at > {self.dialect.now}",
                list(keys),
            )
            rows = cur.fetchall()
        return {info.key: info for info in map(_lease_info, rows)}

    def force_release(self, key: str) -> LeaseInfo | None:
        return self._again(lambda: self._force_release(key))

    def _force_release(self, key: str) -> LeaseInfo | None:
        with self._tx(f"release the lease of {key!r}") as cur:
            cur.execute(
                f"SELECT lease_key, owner, token, acquired_at, expires_at, backend_pid FROM {self._lock} "
                "WHERE lease_key = %s AND owner IS NOT NULL FOR UPDATE",
                (key,),
            )
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(
                f"UPDATE {self._lock} SET owner = NULL, backend_pid = NULL, expires_at = {self.dialect.now} "
                "WHERE lease_key = %s",
                (key,),
            )
        info = _lease_info(row)
        if row[5] is not None:
            self._terminate(int(row[5]), info.owner)
        return info

    def _read_lease(self, cur: Any, key: str) -> LeaseInfo:
        cur.execute(
            f"SELECT lease_key, owner, token, acquired_at, expires_at, backend_pid FROM {self._lock} "
            "WHERE lease_key = %s",
            (key,),
        )
        return _lease_info(cur.fetchone())

    @staticmethod
    def _checked(cur: Any, what: str) -> None:
        if cur.rowcount != 1:
            raise StoreError(f"could not {what}: the conditional write matched {cur.rowcount} rows; run again")


class Held(Exception):
    """The lease row stayed locked past the wait: someone else is writing it."""


def _is_duplicate(err: BaseException) -> bool:
    code = getattr(err, "pgcode", None)
    errno = err.args[0] if getattr(err, "args", None) and isinstance(err.args[0], int) else None
    return code == "23505" or errno == 1062


def _is_lock_timeout(err: BaseException) -> bool:
    code = getattr(err, "pgcode", None)
    errno = err.args[0] if getattr(err, "args", None) and isinstance(err.args[0], int) else None
    return code == "55P03" or errno == 1205


def _lease_info(row: Sequence[Any]) -> LeaseInfo:
    key, owner, token, acquired, expires, pid = row
    return LeaseInfo(
        key=key,
        owner=owner,
        token=int(token),
        acquired_at=_aware(acquired),
        expires_at=_aware(expires),
        extra={} if pid is None else {"backend_pid": int(pid)},
    )
