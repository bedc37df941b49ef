"""The SQL store: audit log and lease in PostgreSQL or MySQL/MariaDB, safe across processes and machines.

Tables: see :mod:`stores.sql_schema`. Every write is a short explicit transaction on an autocommit
connection, and every bookkeeping write is checked:

- A fenced append reads the lease row with a share lock (so a takeover cannot commit in between)
  and refuses unless that owner and token hold an unexpired lease on the **server's** clock;
  inside a TX_SHARED unit's transaction the check takes no row lock (the holder's own heartbeat
  must be able to extend the lease meanwhile), and the takeover ends the holder's connection instead.
- Lease writes run ``SELECT ... FOR UPDATE`` then one conditional ``UPDATE``/``INSERT`` in one
  transaction; expiry is ``clock_timestamp()`` / ``NOW(6)``, never the runner's clock. The row keeps
  the holder's server connection id; a takeover of an expired lease and ``unlock --force`` end that
  connection first (``pg_terminate_backend`` / ``KILL``), so a frozen holder's open transaction can
  neither block the next runner nor commit after it.
- TX_SHARED (:meth:`SqlStore.shared_target`): the unit runs on the store's own connection, so its
  DDL/DML and its STARTED/APPLIED entries commit together (PostgreSQL; MySQL only for DML, as it
  commits DDL implicitly).

One connection per thread: the runner's thread does appends and shared transactions; the heartbeat
thread extends the lease on its own. Driver errors become :class:`StoreError` in :meth:`SqlStore._errors`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import timezone
from typing import Any, TypeVar

from flamingock_provider.core.audit import by_member, key_chunks
from flamingock_provider.core.lease import Fence
from flamingock_provider.core.model import AuditConfig, AuditEntry, LockConfig, TargetConfig
from flamingock_provider.exceptions import ConfigurationError, LeaseLostError, StoreError
from flamingock_provider.stores.sql_lease import Held, SqlLease
from flamingock_provider.stores.sql_schema import DIALECTS, SCHEMA_VERSION, SqlDialect
from flamingock_provider.targets.sql import DbApiTargetSession
from flamingock_provider.targets.sql_connect import backend_pid, connect, connection_lost, driver_message, endpoint

log = logging.getLogger("flamingock.sql")
_T = TypeVar("_T")


class SqlStore(SqlLease):
    """Audit store and lease backend over one PostgreSQL or MySQL/MariaDB database."""

    def __init__(
        self,
        connector: Callable[[], Any],
        dialect: str,
        *,
        conn_id: str | None = None,
        where: str = "",
        schema: str | None = None,
        table: str = "flamingock_audit_log",
        lock_table: str = "flamingock_lock",
    ) -> None:
        self.conn_id = conn_id
        self.dialect: SqlDialect = DIALECTS[dialect]
        self.where = where or dialect
        self.schema = schema
        d = self.dialect
        self._log = d.ident(table, schema)
        self._latest_table = d.ident(f"{table}_latest", schema)
        self._lock = d.ident(lock_table, schema)
        self._versions = d.ident("flamingock_schema_version", schema)
        self._index = d.ident(f"{table}_by_change")
        self._component = table
        self._connector = connector
        self._local = threading.local()
        self._all: list[Any] = []
        self._guard = threading.Lock()
        self._main_thread = threading.get_ident()
        self._main_pid: int | None = None
        self._ensure_schema()

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> Any:
        conn = self._connector()
        try:
            self._session_setup(conn)
            pid = backend_pid(conn, self.dialect.name)
        except Exception:
            conn.close()
            raise
        with self._guard:
            self._all.append(conn)
            if threading.get_ident() == self._main_thread:
                self._main_pid = pid
        return conn

    def _session_setup(self, conn: Any) -> None:
        cur = conn.cursor()
        try:
            if self.dialect.name == "postgres":
                cur.execute("SET application_name = 'flamingock'")
            else:  # UTC timestamps; no gap locks or read locks held by INSERT ... SELECT
                cur.execute("SET time_zone = '+00:00'")
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        finally:
            cur.close()

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._guard:
                if conn in self._all:
                    self._all.remove(conn)
            try:
                conn.close()
            except Exception as err:  # a broken connection is being dropped anyway
                log.debug("closing a dropped %s audit store connection failed: %s", self.dialect.name, err)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (StoreError, LeaseLostError, ConfigurationError, Held):
            raise
        except Exception as err:
            lost = connection_lost(err, getattr(self._local, "conn", None))
            self._drop_connection()  # the next call reconnects (the server may have restarted)
            failure = StoreError(
                f"audit store {self.conn_id or '-'!r} ({self.where}) failed to {what}: {driver_message(err)}; "
                f"check the server is reachable and the connection"
            )
            failure.connection_lost = lost  # type: ignore[attr-defined]
            raise failure from err

    def _again(self, op: Callable[[], _T]) -> _T:
        """Run a lease operation or a read; once more on a new connection when the first one was lost.

        A takeover ends the previous holder's connection on purpose: when that holder wakes up, its
        next extend must answer "not yours any more" (lease lost), not "connection closed".
        """
        try:
            return op()
        except StoreError as err:
            if not getattr(err, "connection_lost", False):
                raise
        return op()

    @contextmanager
    def _tx(self, what: str, conn: Any = None) -> Iterator[Any]:
        """One short explicit transaction; rolled back on any error."""
        with self._errors(what):
            conn = conn or self._conn()
            cur = conn.cursor()
            try:
                cur.execute(self.dialect.begin)
                try:
                    yield cur
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
            finally:
                cur.close()

    @contextmanager
    def _cursor(self, what: str) -> Iterator[Any]:
        with self._errors(what):
            cur = self._conn().cursor()
            try:
                yield cur
            finally:
                cur.close()

    def _ensure_schema(self) -> None:
        with self._cursor("read the schema version") as cur:
            if self._schema_version(cur) == SCHEMA_VERSION:
                return
        with self._tx("create the audit tables") as cur:
            # Runners starting together must not race their DDL and version rows: one creates, the others wait.
            if self.dialect.name == "postgres":
                cur.execute("SELECT pg_advisory_xact_lock(hashtext('flamingock-schema'))")
                if self.schema:
                    cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            else:
                cur.execute("SELECT GET_LOCK('flamingock-schema', 60)")  # a session lock: DDL commits do not free it
            try:
                self._create_tables(cur)
            finally:
                if self.dialect.name == "mysql":
                    cur.execute("SELECT RELEASE_LOCK('flamingock-schema')")

    def _create_tables(self, cur: Any) -> None:
        statements = self.dialect.create_tables(self._log, self._latest_table, self._lock, self._versions, self._index)
        for statement in statements:
            cur.execute(statement)
        cur.execute(f"SELECT version FROM {self._versions} WHERE component = %s", (self._component,))
        row = cur.fetchone()
        if row is None:
            cur.execute(
                f"INSERT INTO {self._versions} (component, version) VALUES (%s, %s)",
                (self._component, SCHEMA_VERSION),
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"audit store {self.conn_id!r}: table {self._component!r} has schema version {row[0]}, written by "
                f"a newer flamingock-provider (this one knows {SCHEMA_VERSION}); upgrade flamingock-provider"
            )

    def _schema_version(self, cur: Any) -> int | None:
        try:
            cur.execute(f"SELECT version FROM {self._versions} WHERE component = %s", (self._component,))
            row = cur.fetchone()
        except Exception:  # the table does not exist yet
            return None
        return None if row is None else int(row[0])

    def close(self) -> None:
        with self._guard:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception as err:  # closing is best effort: the server drops the session either way
                log.debug("closing a %s audit store connection failed: %s", self.dialect.name, err)
        self._local = threading.local()

    # -- audit ------------------------------------------------------------------------------

    def append(self, entry: AuditEntry, *, fence: Fence | None = None, tx: Any = None) -> AuditEntry:
        row = _row(entry, naive_utc=self.dialect.name == "mysql")
        what = f"append {entry.state.value} of change {entry.change_id!r}"
        if self.dialect.name == "postgres":  # one statement, atomic on its own (autocommit) or in the unit's tx
            with self._errors(what):
                cur = (tx.native if tx is not None else self._conn()).cursor()
                try:
                    return self._append_pg(cur, row, entry, fence, locked=tx is None)
                finally:
                    cur.close()
        if tx is not None:  # inside the unit's own transaction (TX_SHARED)
            with self._errors(what):
                cur = tx.native.cursor()
                try:
                    return self._append_in(cur, row, entry, fence, locked=False)
                finally:
                    cur.close()
        with self._tx(what) as cur:
            return self._append_in(cur, row, entry, fence, locked=True)

    def _append_pg(
        self, cur: Any, row: tuple[Any, ...], entry: AuditEntry, fence: Fence | None, *, locked: bool
    ) -> AuditEntry:
        """Fence check, log row and latest pointer in one round trip (data-modifying CTEs)."""
        args: tuple[Any, ...] = row
        source = "(SELECT 1)"
        if fence is not None:
            lock = " FOR SHARE" if locked else ""  # outside a unit's tx: held for this statement only
            source = (
                f"(SELECT 1 FROM {self._lock} WHERE lease_key = %s AND owner = %s AND token = %s "
                f"AND expires_at > {self.dialect.now}{lock})"
            )
            args = (fence.key, fence.owner, fence.token, *row)
        cur.execute(
            f"WITH src AS {source}, "
            f"ins AS (INSERT INTO {self._log} (pipeline, change_id, state, action, created_at, execution_id, entry) "
            "SELECT %s, %s, %s, %s, %s, %s, %s FROM src RETURNING seq, pipeline, change_id), "
            f"up AS (INSERT INTO {self._latest_table} (pipeline, change_id, seq) SELECT pipeline, change_id, seq "
            f"FROM ins ON CONFLICT (pipeline, change_id) DO UPDATE SET seq = EXCLUDED.seq "
            f"WHERE {self._latest_table}.seq < EXCLUDED.seq) "
            "SELECT seq FROM ins",
            args,
        )
        found = cur.fetchone()
        if found is None:
            assert fence is not None
            raise LeaseLostError(fence.key, fence.owner, fence.token, "audit write refused by the store")
        return replace(entry, seq=int(found[0]))

    def _append_in(
        self, cur: Any, row: tuple[Any, ...], entry: AuditEntry, fence: Fence | None, *, locked: bool
    ) -> AuditEntry:
        if fence is not None:
            lock = f" {self.dialect.share_lock}" if locked else ""
            cur.execute(
                f"SELECT 1 FROM {self._lock} WHERE lease_key = %s AND owner = %s AND token = %s "
                f"AND expires_at > {self.dialect.now}{lock}",
                (fence.key, fence.owner, fence.token),
            )
            if cur.fetchone() is None:
                raise LeaseLostError(fence.key, fence.owner, fence.token, "audit write refused by the store")
        insert = (
            f"INSERT INTO {self._log} (pipeline, change_id, state, action, created_at, execution_id, entry) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)"
        )
        if self.dialect.returning:
            cur.execute(insert + " RETURNING seq", row)
            seq = int(cur.fetchone()[0])
        else:
            cur.execute(insert, row)
            seq = int(cur.lastrowid)
        cur.execute(self.dialect.upsert_latest(self._latest_table), (entry.audit_key, entry.change_id, seq))
        return replace(entry, seq=seq)

    def latest(self, pipeline: str) -> Mapping[str, AuditEntry]:
        return self._again(lambda: self._read_latest(pipeline))

    def _read_latest(self, pipeline: str) -> Mapping[str, AuditEntry]:
        with self._cursor(f"read the latest entries of pipeline {pipeline!r}") as cur:
            cur.execute(
                f"SELECT log.seq, log.entry FROM {self._latest_table} latest JOIN {self._log} log ON log.seq = latest.seq "
                "WHERE latest.pipeline = %s",
                (pipeline,),
            )
            rows = cur.fetchall()
        entries = (_decode(seq, raw) for seq, raw in rows)
        return {e.change_id: e for e in entries}

    def latest_members(self, pipeline: str, members: Sequence[str]) -> Mapping[str, Mapping[str, AuditEntry]]:
        return self._again(lambda: self._read_latest_members(pipeline, members))

    def _read_latest_members(self, pipeline: str, members: Sequence[str]) -> Mapping[str, Mapping[str, AuditEntry]]:
        rows: list[Any] = []
        with self._cursor(f"read the latest entries of the members of pipeline {pipeline!r}") as cur:
            for keys in key_chunks(pipeline, members):
                cur.execute(
                    f"SELECT log.seq, log.entry FROM {self._latest_table} latest JOIN {self._log} log "
                    f"ON log.seq = latest.seq WHERE latest.pipeline IN ({', '.join(['%s'] * len(keys))})",
                    keys,
                )
                rows += cur.fetchall()
        return by_member(pipeline, members, (_decode(seq, raw) for seq, raw in rows))

    def history(self, pipeline: str, change_id: str | None = None) -> Sequence[AuditEntry]:
        return self._again(lambda: self._history(pipeline, change_id))

    def _history(self, pipeline: str, change_id: str | None = None) -> Sequence[AuditEntry]:
        sql = f"SELECT seq, entry FROM {self._log} WHERE pipeline = %s"
        args: list[Any] = [pipeline]
        if change_id is not None:
            sql += " AND change_id = %s"
            args.append(change_id)
        with self._cursor(f"read the history of pipeline {pipeline!r}") as cur:
            cur.execute(sql + " ORDER BY seq", args)
            rows = cur.fetchall()
        return [_decode(seq, raw) for seq, raw in rows]

    def shared_target(self, target: TargetConfig) -> DbApiTargetSession | None:
        """The store's own connection as the unit's target (same connection id): TX_SHARED."""
        if self.conn_id is None or target.conn_id != self.conn_id:
            return None
        with self._errors("open a shared transaction"):
            conn = self._conn()
        return _SharedSqlSession(self, conn, target)

    def _hook_factory(self) -> Any:
        from flamingock_provider.targets.connections import get_connection

        assert self.conn_id is not None
        return get_connection(self.conn_id).get_hook()


class _SharedSqlSession(DbApiTargetSession):
    """The store's own connection as a TX_SHARED target: beginning and committing are audit-store writes."""

    def __init__(self, store: SqlStore, conn: Any, target: TargetConfig) -> None:
        super().__init__(
            conn, target, dialect=store.dialect.name, owns_connection=False, hook_factory=store._hook_factory
        )
        self._store = store

    def begin(self) -> None:
        with self._store._errors("begin a shared transaction"):
            super().begin()

    def commit(self) -> None:
        with self._store._errors("commit a shared transaction"):
            super().commit()


def _row(entry: AuditEntry, *, naive_utc: bool) -> tuple[Any, ...]:
    data = entry.to_dict()
    data.pop("seq", None)
    created = entry.created_at.astimezone(timezone.utc)
    return (
        entry.audit_key,
        entry.change_id,
        entry.state.value,
        entry.action.value,
        created.replace(tzinfo=None) if naive_utc else created,  # MySQL DATETIME holds no zone: UTC by convention
        entry.execution_id,
        json.dumps(data, default=str),
    )


def _decode(seq: int, raw: str) -> AuditEntry:
    data = json.loads(raw)
    data["seq"] = int(seq)
    return AuditEntry.from_dict(data)


def open_sql_store(config: AuditConfig, conn: Any) -> SqlStore:
    """Build the store from an Airflow ``postgres`` or ``mysql`` connection; it connects at once."""
    from flamingock_provider.targets.sql_connect import dialect_of

    dialect = dialect_of(conn.conn_type)
    conn_id = config.conn_id or conn.conn_id
    if config.schema and dialect != "postgres":
        raise ConfigurationError(
            f"pipeline.yaml: field 'audit.schema': only PostgreSQL has schemas; on {dialect} the audit tables live "
            f"in the connection's database ({conn.schema!r}): remove 'audit.schema'"
        )
    what = f"audit store {conn_id!r}"
    return SqlStore(
        lambda: connect(conn, what, StoreError),
        dialect,
        conn_id=conn_id,
        where=endpoint(conn),
        schema=config.schema,
        table=config.table,
        lock_table=config.lock_table,
    )


def open_sql_lease(config: LockConfig, conn: Any) -> SqlStore:
    """The lease backend of a ``lock.conn_id`` naming a postgres or mysql connection (its own tables)."""
    return open_sql_store(AuditConfig(conn_id=config.conn_id), conn)
