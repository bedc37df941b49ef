"""The embedded store: audit log and lease in one SQLite file, safe across processes.

WAL journal, ``BEGIN IMMEDIATE`` for every write and a busy timeout make concurrent runners on one
machine queue instead of failing. Lease writes are single conditional statements; an audit append
made under a fence only inserts while the fence's owner and token hold an unexpired lease.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flamingock_provider.core.audit import by_member, key_chunks
from flamingock_provider.core.lease import Fence
from flamingock_provider.core.model import AuditConfig, AuditEntry, LeaseInfo, TargetConfig
from flamingock_provider.core.targets import TargetSession
from flamingock_provider.exceptions import ConfigurationError, LeaseLostError, StoreError
from flamingock_provider.targets.sql import DbApiTargetSession

_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _ident(name: str) -> str:
    if not name or not set(name) <= _IDENT_CHARS:
        raise ConfigurationError(f"table name {name!r} is not a plain identifier; use letters, digits and _")
    return f'"{name}"'


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


class SqliteStore:
    """Audit store and lease backend over one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        *,
        table: str = "flamingock_audit_log",
        lock_table: str = "flamingock_lock",
        conn_id: str | None = None,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.conn_id = conn_id
        self._table = _ident(table)
        self._index = _ident(f"{table}_by_change")
        self._latest = _ident(f"{table}_latest")
        self._lock = _ident(lock_table)
        self._clock = clock
        self._busy = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_guard = threading.Lock()
        self._ensure_schema()

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._all_guard:
                self._all.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._busy, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy * 1000)}")
            self._wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except (sqlite3.Error, OSError) as err:
            raise StoreError(
                f"cannot open the audit store {str(self.path)!r}: {err}; check the path is writable "
                f"(FLAMINGOCK_HOME or the audit connection)"
            ) from err
        return conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL; retry while another process holds the file during its own switch.

        Changing the journal mode can fail at once instead of waiting: when several runners open a
        new audit file at once, all but one may get "database is locked" at once. Wait for it instead,
        within the busy timeout.
        """
        deadline = time.monotonic() + self._busy
        pause = 0.01
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() >= deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            raise self._store_error(err) from err

    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as err:
            raise self._store_error(err) from err

    def _store_error(self, err: sqlite3.Error) -> StoreError:
        hint = "another process holds the database locked; retry" if "locked" in str(err) else "check the file"
        return StoreError(f"audit store {str(self.path)!r} failed: {err}; {hint}")

    def _ensure_schema(self) -> None:
        with self._write() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} ("
                " seq INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, change_id TEXT NOT NULL,"
                " state TEXT NOT NULL, action TEXT NOT NULL, created_at TEXT NOT NULL,"
                " execution_id TEXT NOT NULL, entry TEXT NOT NULL)"
            )
            conn.execute(f"CREATE INDEX IF NOT EXISTS {self._index} ON {self._table} (pipeline, change_id, seq)")
            # The latest entry per change, kept in the append's transaction: reads stay flat as history grows.
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._latest} (pipeline TEXT NOT NULL, change_id TEXT NOT NULL,"
                " seq INTEGER NOT NULL, PRIMARY KEY (pipeline, change_id)) WITHOUT ROWID"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._lock} ("
                " key TEXT PRIMARY KEY, owner TEXT, token INTEGER NOT NULL,"
                " acquired_at REAL, expires_at REAL NOT NULL)"
            )

    def close(self) -> None:
        with self._all_guard:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    # -- audit ------------------------------------------------------------------------------

    def append(self, entry: AuditEntry, *, fence: Fence | None = None, tx: TargetSession | None = None) -> AuditEntry:
        row = self._row(entry)
        if tx is not None:
            return self._append_in(self._joined(tx), row, entry, fence)
        with self._write() as conn:
            return self._append_in(conn, row, entry, fence)

    def _append_in(
        self, conn: sqlite3.Connection, row: tuple[Any, ...], entry: AuditEntry, fence: Fence | None
    ) -> AuditEntry:
        cols = "(pipeline, change_id, state, action, created_at, execution_id, entry)"
        if fence is None:
            cur = conn.execute(f"INSERT INTO {self._table} {cols} VALUES (?,?,?,?,?,?,?)", row)
        else:
            cur = conn.execute(
                f"INSERT INTO {self._table} {cols} SELECT ?,?,?,?,?,?,? WHERE EXISTS ("
                f"SELECT 1 FROM {self._lock} WHERE key = ? AND owner = ? AND token = ? AND expires_at > ?)",
                (*row, fence.key, fence.owner, fence.token, self._clock()),
            )
            if cur.rowcount != 1:
                raise LeaseLostError(fence.key, fence.owner, fence.token, "audit write refused by the store")
        conn.execute(
            f"INSERT INTO {self._latest} (pipeline, change_id, seq) VALUES (?,?,?) "
            f"ON CONFLICT (pipeline, change_id) DO UPDATE SET seq = excluded.seq",
            (entry.audit_key, entry.change_id, cur.lastrowid),
        )
        return _with_seq(entry, cur.lastrowid)

    @staticmethod
    def _row(entry: AuditEntry) -> tuple[Any, ...]:
        data = entry.to_dict()
        data.pop("seq", None)
        return (
            entry.audit_key,
            entry.change_id,
            entry.state.value,
            entry.action.value,
            data["created_at"],
            entry.execution_id,
            json.dumps(data, default=str),
        )

    def latest(self, pipeline: str) -> Mapping[str, AuditEntry]:
        rows = self._read(
            f"SELECT log.seq, log.entry FROM {self._latest} AS latest JOIN {self._table} AS log "
            f"ON log.seq = latest.seq WHERE latest.pipeline = ?",
            (pipeline,),
        )
        entries = (_decode(seq, raw) for seq, raw in rows)
        return {e.change_id: e for e in entries}

    def latest_members(self, pipeline: str, members: Sequence[str]) -> Mapping[str, Mapping[str, AuditEntry]]:
        rows: list[tuple[Any, ...]] = []
        for keys in key_chunks(pipeline, members):
            rows += self._read(
                f"SELECT log.seq, log.entry FROM {self._latest} AS latest JOIN {self._table} AS log "
                f"ON log.seq = latest.seq WHERE latest.pipeline IN ({', '.join('?' * len(keys))})",
                keys,
            )
        return by_member(pipeline, members, (_decode(seq, raw) for seq, raw in rows))

    def history(self, pipeline: str, change_id: str | None = None) -> Sequence[AuditEntry]:
        sql = f"SELECT seq, entry FROM {self._table} WHERE pipeline = ?"
        args: list[Any] = [pipeline]
        if change_id is not None:
            sql += " AND change_id = ?"
            args.append(change_id)
        return [_decode(seq, raw) for seq, raw in self._read(sql + " ORDER BY seq", args)]

    def _joined(self, tx: TargetSession) -> sqlite3.Connection:
        """The connection of a shared transaction this store handed out (TX_SHARED)."""
        if not isinstance(tx, _SharedTargetSession) or tx.store is not self:
            raise ConfigurationError(
                f"the SQLite audit store can only join its own transaction, not a {tx.kind!r} target session"
            )
        return tx.connection

    def shared_target(self, target: TargetConfig) -> DbApiTargetSession | None:
        if self.conn_id is None or target.conn_id != self.conn_id:
            return None
        return _SharedTargetSession(self, target)

    # -- lease ------------------------------------------------------------------------------

    def acquire(self, key: str, owner: str, ttl_s: float) -> LeaseInfo | None:
        now = self._clock()
        with self._write() as conn:
            row = conn.execute(
                f"INSERT INTO {self._lock} (key, owner, token, acquired_at, expires_at) VALUES (?,?,1,?,?) "
                f"ON CONFLICT(key) DO UPDATE SET owner = excluded.owner, token = token + 1, "
                f"acquired_at = excluded.acquired_at, expires_at = excluded.expires_at "
                f"WHERE owner IS NULL OR expires_at <= ? OR owner = excluded.owner "
                f"RETURNING token, acquired_at, expires_at",
                (key, owner, now, now + ttl_s, now),
            ).fetchone()
        return None if row is None else LeaseInfo(key, owner, int(row[0]), _utc(row[1]), _utc(row[2]))

    def extend(self, key: str, owner: str, token: int, ttl_s: float) -> LeaseInfo | None:
        now = self._clock()
        with self._write() as conn:
            row = conn.execute(
                f"UPDATE {self._lock} SET expires_at = ? WHERE key = ? AND owner = ? AND token = ? "
                f"RETURNING acquired_at, expires_at",
                (now + ttl_s, key, owner, token),
            ).fetchone()
        return None if row is None else LeaseInfo(key, owner, token, _utc(row[0]), _utc(row[1]))

    def release(self, key: str, owner: str, token: int) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                f"UPDATE {self._lock} SET owner = NULL, expires_at = 0 WHERE key = ? AND owner = ? AND token = ?",
                (key, owner, token),
            )
        return cur.rowcount == 1

    def current(self, key: str) -> LeaseInfo | None:
        rows = self._read(
            f"SELECT owner, token, acquired_at, expires_at FROM {self._lock} "
            f"WHERE key = ? AND owner IS NOT NULL AND expires_at > ?",
            (key, self._clock()),
        )
        if not rows:
            return None
        owner, token, acquired, expires = rows[0]
        return LeaseInfo(key, owner, int(token), _utc(acquired), _utc(expires))

    def current_many(self, keys: Sequence[str]) -> Mapping[str, LeaseInfo]:
        """The live holders of ``keys`` in one query (a fleet's member leases)."""
        if not keys:
            return {}
        rows = self._read(
            f"SELECT key, owner, token, acquired_at, expires_at FROM {self._lock} "
            f"WHERE key IN ({', '.join('?' * len(keys))}) AND owner IS NOT NULL AND expires_at > ?",
            (*keys, self._clock()),
        )
        return {key: LeaseInfo(key, owner, int(token), _utc(acq), _utc(exp)) for key, owner, token, acq, exp in rows}

    def force_release(self, key: str) -> LeaseInfo | None:
        with self._write() as conn:
            row = conn.execute(
                f"SELECT owner, token, acquired_at, expires_at FROM {self._lock} WHERE key = ? AND owner IS NOT NULL",
                (key,),
            ).fetchone()
            conn.execute(f"UPDATE {self._lock} SET owner = NULL, expires_at = 0 WHERE key = ?", (key,))
        if row is None:
            return None
        return LeaseInfo(key, row[0], int(row[1]), _utc(row[2]), _utc(row[3]))


class _SharedTargetSession(DbApiTargetSession):
    """The store's own connection as a TX_SHARED target: beginning and committing are audit-store writes."""

    def __init__(self, store: SqliteStore, target: TargetConfig) -> None:
        self.connection = store._conn()
        super().__init__(self.connection, target, begin_sql="BEGIN IMMEDIATE", owns_connection=False)
        self.store = store

    def begin(self) -> None:
        try:
            super().begin()
        except sqlite3.Error as err:  # e.g. locked by another process past the busy timeout
            raise self.store._store_error(err) from err

    def commit(self) -> None:
        try:
            super().commit()
        except sqlite3.Error as err:
            raise self.store._store_error(err) from err


def _decode(seq: int, raw: str) -> AuditEntry:
    data = json.loads(raw)
    data["seq"] = seq
    return AuditEntry.from_dict(data)


def _with_seq(entry: AuditEntry, seq: int | None) -> AuditEntry:
    from dataclasses import replace

    return replace(entry, seq=seq)


def open_sqlite_store(config: Any, conn: Any) -> SqliteStore:
    """Build the store from an Airflow ``sqlite`` connection (the path is in host or schema)."""
    path = conn.host or conn.schema
    if not path:
        raise ConfigurationError(
            f"audit connection {config.conn_id!r} names no database file; use sqlite:////absolute/path.db"
        )
    return SqliteStore(path, table=config.table, lock_table=config.lock_table, conn_id=config.conn_id)


def open_embedded_store(config: AuditConfig, path: Path) -> SqliteStore:
    """Build the embedded default store: a SQLite file on this machine (``$FLAMINGOCK_HOME/audit.db``)."""
    return SqliteStore(path, table=config.table, lock_table=config.lock_table)
