"""SQL targets over any DB-API connection (what Airflow's common SQL hooks return)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import cached_property
from typing import Any, NoReturn

from flamingock_provider.core.model import TargetConfig
from flamingock_provider.core.targets import MARKER_TABLE
from flamingock_provider.exceptions import ConfigurationError


def _placeholder(conn: Any) -> str:
    if isinstance(conn, sqlite3.Connection):
        return "?"
    module = __import__(type(conn).__module__.split(".")[0])
    return "?" if getattr(module, "paramstyle", "format") == "qmark" else "%s"


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
    ) -> None:
        self.native = conn
        self.config = config
        self._hook_factory = hook_factory
        self._owns = owns_connection
        self._begin_sql = begin_sql
        if isinstance(conn, sqlite3.Connection):
            # Explicit BEGIN so DDL joins the transaction (sqlite3 only auto-begins before DML).
            conn.isolation_level = None
            self._begin_sql = begin_sql or "BEGIN"

    @cached_property
    def hook(self) -> Any:
        """The Airflow hook of the target's connection (built on first use)."""
        return self._hook_factory() if self._hook_factory else None

    def client(self, service: str) -> NoReturn:
        raise ConfigurationError(
            f"target {self.config.name!r} is a SQL database: ctx.client({service!r}) needs an 'aws' "
            f"connection; use ctx.target (a DB-API connection) instead"
        )

    def begin(self) -> None:
        if self._begin_sql:
            self.execute(self._begin_sql)

    def commit(self) -> None:
        self.native.commit()

    def rollback(self) -> None:
        self.native.rollback()

    def execute(self, statement: str) -> None:
        cursor = self.native.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()

    def write_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        cursor = self.native.cursor()
        try:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (pipeline VARCHAR(200) NOT NULL, "
                "change_id VARCHAR(200) NOT NULL, execution_id VARCHAR(64) NOT NULL)"
            )
            p = _placeholder(self.native)
            cursor.execute(
                f"INSERT INTO {MARKER_TABLE} (pipeline, change_id, execution_id) VALUES ({p}, {p}, {p})",
                (pipeline, change_id, execution_id),
            )
        finally:
            cursor.close()

    def has_marker(self, pipeline: str, change_id: str, execution_id: str) -> bool:
        p = _placeholder(self.native)
        cursor = self.native.cursor()
        try:
            cursor.execute(
                f"SELECT 1 FROM {MARKER_TABLE} WHERE pipeline = {p} AND change_id = {p} AND execution_id = {p}",
                (pipeline, change_id, execution_id),
            )
            return cursor.fetchone() is not None
        except Exception as err:  # the marker table does not exist yet: no marker
            if "no such table" in str(err).lower() or "does not exist" in str(err).lower():
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
