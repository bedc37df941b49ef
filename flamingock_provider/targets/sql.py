"""SQL targets over any DB-API connection: SQLite, PostgreSQL, MySQL/MariaDB, or another common-SQL hook's.

The engine, not the unit, begins and commits. PostgreSQL and MySQL connections are autocommit
(see :mod:`targets.sql_connect`), so a transaction is an explicit ``BEGIN`` ... ``COMMIT`` and a
NON_TX unit's statements commit one by one. A target's ``lock_timeout_seconds`` bounds how long a
statement may queue for a table lock (PostgreSQL ``lock_timeout``, MySQL ``lock_wait_timeout``);
driver errors of a statement become :class:`StatementError` / :class:`TableLockTimeoutError` here.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from functools import cached_property
from typing import Any, NoReturn

from flamingock_provider.core.model import TargetConfig
from flamingock_provider.core.targets import MARKER_SCHEMA, marker_table
from flamingock_provider.exceptions import ConfigurationError, StatementError, TableLockTimeoutError
from flamingock_provider.targets.sql_connect import connection_lost, driver_message

BEGIN_SQL = {"postgres": "BEGIN", "mysql": "START TRANSACTION", "sqlite": "BEGIN"}
PG_LOCK_NOT_AVAILABLE = "55P03"
MYSQL_LOCK_WAIT_TIMEOUT = 1205
_TABLE_OF = re.compile(
    r"^\s*(?:ALTER\s+TABLE(?:\s+ONLY)?(?:\s+IF\s+EXISTS)?|LOCK(?:\s+TABLES?)?|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|"
    r"TRUNCATE(?:\s+TABLE)?|INSERT\s+INTO|UPDATE|DELETE\s+FROM|RENAME\s+TABLE|"
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?\S*\s*ON(?:\s+ONLY)?)\s+"
    r"([\w.\"`]+)",
    re.IGNORECASE,
)


def _placeholder(conn: Any) -> str:
    if isinstance(conn, sqlite3.Connection):
        return "?"
    module = __import__(type(conn).__module__.split(".")[0])
    return "?" if getattr(module, "paramstyle", "format") == "qmark" else "%s"


def table_of(statement: str) -> str | None:
    """The table a DDL/DML statement works on, as written (None when the statement does not say)."""
    match = _TABLE_OF.match(statement)
    return match.group(1).strip('"`') if match else None


class DbApiTargetSession:
    """A unit's session on a SQL database. The engine, not the unit, commits."""

    kind = "sql"
    session = None
    supports_transactions = True

    def __init__(
        self,
        conn: Any,
        config: TargetConfig,
        *,
        hook_factory: Callable[[], Any] | None = None,
        begin_sql: str | None = None,
        owns_connection: bool = True,
        dialect: str | None = None,
    ) -> None:
        self.native = conn
        self.config = config
        self.dialect = dialect or ("sqlite" if isinstance(conn, sqlite3.Connection) else "generic")
        self.in_transaction = False
        self._hook_factory = hook_factory
        self._owns = owns_connection
        self._begin_sql = (begin_sql or BEGIN_SQL.get(self.dialect)) if dialect else begin_sql
        if isinstance(conn, sqlite3.Connection):
            # Explicit BEGIN so DDL joins the transaction (sqlite3 only auto-begins before DML).
            conn.isolation_level = None
            self._begin_sql = begin_sql or "BEGIN"
        self._explicit = self.dialect in ("postgres", "mysql")  # autocommit connections: COMMIT is a statement
        if owns_connection:
            self._set_lock_timeout(local=False)

    @cached_property
    def hook(self) -> Any:
        """The Airflow hook of the target's connection (built on first use)."""
        return self._hook_factory() if self._hook_factory else None

    @cached_property
    def server_version(self) -> int | None:
        """PostgreSQL's ``server_version`` number (e.g. 150004); None elsewhere."""
        return int(self.native.server_version) if self.dialect == "postgres" else None

    @property
    def lock_timeout_seconds(self) -> float | None:
        value = self.config.options.get("lock_timeout_seconds")
        return None if value is None else float(value)

    def client(self, service: str) -> NoReturn:
        raise ConfigurationError(
            f"target {self.config.name!r} is a SQL database: ctx.client({service!r}) needs an 'aws' "
            f"connection; use ctx.target (a DB-API connection) instead"
        )

    def begin(self) -> None:
        if self.dialect == "mysql":
            self._ensure_marker_table()  # CREATE TABLE would commit the transaction implicitly
        if self._begin_sql:
            self._run(self._begin_sql)
        self.in_transaction = True
        if not self._owns:
            self._set_lock_timeout(local=True)

    def commit(self) -> None:
        if self._explicit:
            self.execute("COMMIT")  # a lost connection here becomes a StatementError naming the commit
        else:
            self.native.commit()
        self.in_transaction = False

    def rollback(self) -> None:
        self.in_transaction = False
        if not self._explicit:
            self.native.rollback()
            return
        try:
            self._run("ROLLBACK")
        except Exception as err:
            if not connection_lost(err, self.native):
                raise
            # The server rolls back the transaction of a connection that is gone: nothing left to undo.

    def execute(self, statement: str) -> None:
        """Run one statement; a driver error becomes :class:`StatementError` naming it."""
        try:
            self._run(statement)
        except Exception as err:
            if self.dialect in ("sqlite", "generic"):
                raise
            raise self._statement_error(statement, err) from err

    def _run(self, statement: str, args: Any = None) -> None:
        cursor = self.native.cursor()
        try:
            cursor.execute(statement) if args is None else cursor.execute(statement, args)
        finally:
            cursor.close()

    def _statement_error(self, statement: str, err: Exception) -> StatementError:
        detail = driver_message(err)
        code = getattr(err, "pgcode", None)
        errno = err.args[0] if err.args and isinstance(err.args[0], int) else None
        if code == PG_LOCK_NOT_AVAILABLE or errno == MYSQL_LOCK_WAIT_TIMEOUT:
            seconds = self.lock_timeout_seconds
            if seconds is not None:
                return TableLockTimeoutError(statement, self.config.name, table_of(statement), seconds, detail)
        if code:
            detail = f"{code} {detail}"
        return StatementError(statement, self.config.name, detail)

    def _set_lock_timeout(self, *, local: bool) -> None:
        seconds = self.lock_timeout_seconds
        if seconds is None:
            return
        if self.dialect == "postgres":
            scope = "LOCAL" if local else "SESSION"
            self._run(f"SET {scope} lock_timeout = '{int(seconds * 1000)}ms'")
        elif self.dialect == "mysql":
            whole = max(1, round(seconds))
            self._run(f"SET SESSION lock_wait_timeout = {whole}, innodb_lock_wait_timeout = {whole}")

    @cached_property
    def marker_table(self) -> str:
        """The marker table's qualified name; on PostgreSQL in the ``flamingock`` schema unless one is named."""
        name = marker_table(self.config)
        return f"{MARKER_SCHEMA}.{name}" if self.dialect == "postgres" and "." not in name else name

    def _ensure_marker_table(self) -> None:
        if self.dialect == "postgres" and "." in self.marker_table:
            self._run(f"CREATE SCHEMA IF NOT EXISTS {self.marker_table.split('.')[0]}")
        self._run(
            f"CREATE TABLE IF NOT EXISTS {self.marker_table} (pipeline VARCHAR(200) NOT NULL, "
            "change_id VARCHAR(200) NOT NULL, execution_id VARCHAR(64) NOT NULL)"
        )

    def write_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        if self.dialect != "mysql":
            self._ensure_marker_table()
        p = _placeholder(self.native)
        self._run(
            f"INSERT INTO {self.marker_table} (pipeline, change_id, execution_id) VALUES ({p}, {p}, {p})",
            (pipeline, change_id, execution_id),
        )

    def clear_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        """Delete the marker (outside any transaction: SQLite, PostgreSQL and MySQL commit it at once)."""
        p = _placeholder(self.native)
        self._run(
            f"DELETE FROM {self.marker_table} WHERE pipeline = {p} AND change_id = {p} AND execution_id = {p}",
            (pipeline, change_id, execution_id),
        )
        if not self._explicit:
            self.native.commit()

    def has_marker(self, pipeline: str, change_id: str, execution_id: str) -> bool:
        p = _placeholder(self.native)
        cursor = self.native.cursor()
        try:
            cursor.execute(
                f"SELECT 1 FROM {self.marker_table} WHERE pipeline = {p} AND change_id = {p} AND execution_id = {p}",
                (pipeline, change_id, execution_id),
            )
            return cursor.fetchone() is not None
        except Exception as err:  # the marker table does not exist yet: no marker
            text = str(err).lower()
            if "no such table" in text or "does not exist" in text or "doesn't exist" in text:
                _reset(self.native)
                return False
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        if self._owns:
            self.native.close()


def _reset(conn: Any) -> None:
    """Clear an aborted transaction (PostgreSQL refuses further statements until then)."""
    try:
        conn.rollback()
    except Exception:
        pass
