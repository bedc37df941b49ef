"""Read-only, time-bounded queries on a SQL target: what `plan` impact and `checks:` run.

The bound is the database's own where it has one (PostgreSQL ``statement_timeout``, MySQL
``max_execution_time`` / MariaDB ``max_statement_time``); on SQLite a progress handler interrupts
the query at the deadline, and the query runs with ``PRAGMA query_only`` so it can never write.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from flamingock_provider.exceptions import ConfigurationError, ReadTimeoutError

_PROGRESS_STEPS = 1000  # SQLite VM instructions between two deadline checks


def dialect_of_connection(conn: Any) -> str | None:
    """The sqlglot dialect of a DB-API connection, from its driver module."""
    if isinstance(conn, sqlite3.Connection):
        return "sqlite"
    module = type(conn).__module__.split(".")[0].lower()
    if module.startswith("psycopg") or module in ("pg8000", "asyncpg"):
        return "postgres"
    if module in ("mysqldb", "pymysql", "mysql", "mariadb"):
        return "mysql"
    return None


def first_row(conn: Any, sql: str, timeout: float) -> tuple[Any, ...] | None:
    """Run ``sql`` read-only within ``timeout`` seconds; return its first row (None: no row)."""
    if isinstance(conn, sqlite3.Connection):
        return _sqlite_first_row(conn, sql, timeout)
    return _dbapi_first_row(conn, sql, timeout)


def _sqlite_first_row(conn: sqlite3.Connection, sql: str, timeout: float) -> tuple[Any, ...] | None:
    deadline = time.monotonic() + timeout
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
    conn.execute("PRAGMA query_only = ON")
    try:
        row = conn.execute(sql).fetchone()
    except sqlite3.OperationalError as err:
        if "interrupted" in str(err).lower():
            raise ReadTimeoutError(f"{sql!r} did not finish within {timeout:g} s and was interrupted") from err
        raise
    finally:
        conn.execute("PRAGMA query_only = OFF")
        conn.set_progress_handler(None, 0)
    return tuple(row) if row is not None else None


def _dbapi_first_row(conn: Any, sql: str, timeout: float) -> tuple[Any, ...] | None:
    millis = max(1, int(timeout * 1000))
    bounds = {
        "postgres": [f"SET statement_timeout = {millis}"],
        "mysql": [f"SET SESSION max_execution_time = {millis}", f"SET SESSION max_statement_time = {timeout:g}"],
    }.get(dialect_of_connection(conn) or "", [])
    cursor = conn.cursor()
    try:
        for bound in bounds:
            try:
                cursor.execute(bound)
            except Exception:  # MySQL knows max_execution_time, MariaDB max_statement_time: one of them fails
                _rollback(conn)
        cursor.execute(sql)
        row = cursor.fetchone()
    except Exception as err:
        text = str(err).lower()
        if "timeout" in text or "canceling statement" in text or "max_execution_time" in text or "interrupted" in text:
            raise ReadTimeoutError(f"{sql!r} did not finish within {timeout:g} s and was cancelled") from err
        raise
    finally:
        cursor.close()
        _rollback(conn)  # never leave a read transaction (or the timeout setting's) open
    return tuple(row) if row is not None else None


def _rollback(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:
        pass


def count(conn: Any, sql: str, timeout: float) -> int:
    """Run a ``SELECT COUNT(...)`` read-only within ``timeout``; return the count."""
    row = first_row(conn, sql, timeout)
    if row is None or not isinstance(row[0], int):
        raise ConfigurationError(f"{sql!r} returned {row!r}, not a count")
    return row[0]
