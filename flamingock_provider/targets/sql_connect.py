"""Open PostgreSQL and MySQL/MariaDB connections from Airflow connection fields, drivers imported lazily.

Targets and the SQL audit store connect straight through the drivers the official providers use
(psycopg2 for ``postgres``, mysqlclient for ``mysql``), so the CLI needs no Airflow import; the
provider hook is built only when a unit asks for ``ctx.hook``. Connections are opened in autocommit
mode: a transaction is always an explicit ``BEGIN`` / ``START TRANSACTION`` the engine issues.
Connection failures become one message: ``cannot reach <what> (<type> at host:port): <driver>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flamingock_provider.exceptions import FlamingockError

SQL_CONN_TYPES = ("postgres", "mysql")
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}
CONNECT_TIMEOUT_S = 10
_PG_EXTRAS = frozenset(
    {"sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "connect_timeout", "application_name", "options"}
    | {"target_session_attrs", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count"}
)
_MYSQL_EXTRAS = frozenset({"charset", "unix_socket", "connect_timeout", "init_command", "ssl"})


def dialect_of(conn_type: str | None) -> str:
    """The dialect of an Airflow connection type: ``postgres``, ``mysql``, ``sqlite`` or ``generic``."""
    kind = (conn_type or "").lower()
    if kind in ("postgres", "postgresql"):
        return "postgres"
    if kind in ("mysql", "mariadb"):
        return "mysql"
    return "sqlite" if kind == "sqlite" else "generic"


def endpoint(conn: Any) -> str:
    """``postgres at host:port`` for messages (never the password)."""
    dialect = dialect_of(conn.conn_type)
    return f"{dialect} at {conn.host or 'localhost'}:{conn.port or DEFAULT_PORTS.get(dialect, '?')}"


def connect(conn: Any, what: str, error: Callable[[str], FlamingockError]) -> Any:
    """Open an autocommit DB-API connection for ``conn``; ``error(message)`` builds the failure."""
    dialect = dialect_of(conn.conn_type)
    opener = _connect_postgres if dialect == "postgres" else _connect_mysql if dialect == "mysql" else None
    if opener is None:
        raise error(f"{what}: connection type {conn.conn_type!r} is not one of {', '.join(SQL_CONN_TYPES)}")
    try:
        return opener(conn)
    except ImportError as err:
        extra = "postgres" if dialect == "postgres" else "mysql"
        raise error(f"{what}: the {dialect} driver is not installed ({err}); pip install "
                    f"'flamingock-provider[{extra}]'") from err  # fmt: skip
    except Exception as err:
        raise error(f"cannot reach {what} ({endpoint(conn)}): {driver_message(err)}; check the connection") from err


def driver_message(err: BaseException) -> str:
    """The driver's message on one line (psycopg2 and MySQLdb put details on several)."""
    args: tuple[Any, ...] = tuple(getattr(err, "args", ()))
    if len(args) == 2 and isinstance(args[0], int):  # MySQLdb: (errno, message)
        return f"({args[0]}) {args[1]}"
    text = str(err).strip() or type(err).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _connect_postgres(conn: Any) -> Any:
    import psycopg2

    extra = {k: v for k, v in (conn.extra_dejson or {}).items() if k in _PG_EXTRAS}
    extra.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    native = psycopg2.connect(
        host=conn.host or "localhost",
        port=conn.port or DEFAULT_PORTS["postgres"],
        user=conn.login,
        password=conn.password,
        dbname=conn.schema or None,
        **extra,
    )
    native.autocommit = True
    return native


def _connect_mysql(conn: Any) -> Any:
    import MySQLdb
    from MySQLdb.constants import CLIENT

    extra = {k: v for k, v in (conn.extra_dejson or {}).items() if k in _MYSQL_EXTRAS}
    extra.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    extra.setdefault("charset", "utf8mb4")
    args: dict[str, Any] = {"host": conn.host or "localhost", "port": int(conn.port or DEFAULT_PORTS["mysql"])}
    if conn.login:
        args["user"] = conn.login
    if conn.password:
        args["password"] = conn.password
    if conn.schema:
        args["database"] = conn.schema
    # FOUND_ROWS: rowcount counts matched rows, so a conditional write that changed nothing still reads as 1.
    native = MySQLdb.connect(**args, client_flag=CLIENT.FOUND_ROWS, **extra)
    native.autocommit(True)
    return native


def backend_pid(native: Any, dialect: str) -> int:
    """The server-side id of a connection (PostgreSQL backend pid, MySQL connection id)."""
    if dialect == "postgres":
        return int(native.get_backend_pid())
    cursor = native.cursor()
    try:
        cursor.execute("SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])
    finally:
        cursor.close()


_MYSQL_LOST = frozenset({2006, 2013, 2055, 4031})  # server gone, lost during query, lost at handshake, idle kill


def connection_lost(err: BaseException, native: Any = None) -> bool:
    """True when ``err`` means the connection is gone (server restart, ``pg_terminate_backend``, ``KILL``)."""
    if native is not None and getattr(native, "closed", False):  # psycopg2 marks a broken connection closed
        return True
    args = getattr(err, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _MYSQL_LOST
    return type(err).__name__ == "InterfaceError"
