"""Snapshot a SQL target for a rollback rehearsal: its schema (SQLAlchemy inspection) and row counts.

Tables of the connection's default schema (SQLite ``main``, PostgreSQL's ``search_path``, the MySQL
database): columns with type, nullability and default; indexes; primary, unique, foreign-key and
check constraints; the row count. Views with their definition. The engine's marker table is left
out: the rehearsal itself writes it. The inspection runs on the session's own DB-API connection.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from flamingock_provider.core.rehearsal import Facts
from flamingock_provider.core.targets import MARKER_TABLE, TargetSession
from flamingock_provider.targets.sql_reads import dialect_of_connection

_URLS = {"sqlite": "sqlite://", "postgres": "postgresql+psycopg2://", "mysql": "mysql+mysqldb://"}


def snapshot_sql(session: TargetSession) -> Facts:
    """Return ``{"table t": {"column c": ..., "index i": ..., "rows": n}, "view v": {...}}``."""
    import sqlalchemy
    from sqlalchemy.pool import StaticPool

    native = session.native
    dialect = "sqlite" if isinstance(native, sqlite3.Connection) else dialect_of_connection(native)
    url = _URLS.get(dialect or "")
    if url is None:
        raise NotImplementedError(
            f"target {session.config.name!r}: no snapshot for a {type(native).__name__} connection"
        )
    engine = sqlalchemy.create_engine(url, creator=lambda: native, poolclass=StaticPool)
    facts: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        inspector = sqlalchemy.inspect(conn)
        for table in sorted(inspector.get_table_names()):
            if table.lower() != MARKER_TABLE:
                facts[f"table {table}"] = _table(inspector, conn, table)
        for view in sorted(inspector.get_view_names()):
            facts[f"view {view}"] = {"definition": " ".join(str(inspector.get_view_definition(view) or "").split())}
        conn.rollback()
    return facts


def _table(inspector: Any, conn: Any, table: str) -> dict[str, Any]:
    dialect = conn.dialect
    facts: dict[str, Any] = {}
    for column in inspector.get_columns(table):
        kind = column["type"].compile(dialect=dialect)
        null = "NULL" if column.get("nullable", True) else "NOT NULL"
        default = column.get("default")
        facts[f"column {column['name']}"] = f"{kind} {null}" + (f" DEFAULT {default}" if default is not None else "")
    pk = inspector.get_pk_constraint(table) or {}
    if pk.get("constrained_columns"):
        facts["primary key"] = ", ".join(pk["constrained_columns"])
    for index in inspector.get_indexes(table):
        unique = "unique " if index.get("unique") else ""
        facts[f"index {index['name']}"] = f"{unique}({', '.join(str(c) for c in index.get('column_names') or [])})"
    for constraint in _optional(inspector.get_unique_constraints, table):
        columns = ", ".join(constraint["column_names"])
        facts[f"unique {constraint.get('name') or columns}"] = columns
    for fk in _optional(inspector.get_foreign_keys, table):
        name = fk.get("name") or ", ".join(fk["constrained_columns"])
        cols = ", ".join(fk["referred_columns"])
        facts[f"foreign key {name}"] = f"({', '.join(fk['constrained_columns'])}) -> {fk['referred_table']}({cols})"
    for check in _optional(inspector.get_check_constraints, table):
        facts[f"check {check.get('name') or check['sqltext']}"] = " ".join(str(check["sqltext"]).split())
    quoted = dialect.identifier_preparer.quote(table)
    facts["rows"] = int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {quoted}").scalar_one())
    return facts


def _optional(read: Any, table: str) -> list[dict[str, Any]]:
    """A reflection the dialect may not implement (SQLite check constraints on old versions)."""
    try:
        return list(read(table))
    except NotImplementedError:
        return []
