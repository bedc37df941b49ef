"""Risk of SQL statements, read with sqlglot in the target's dialect (SPEC §14).

Rules (after Atlas's analyzers: destructive DS1xx, backward-incompatible BC1xx, data-dependent MF1xx,
PostgreSQL locks PG1xx/PG3xx, MySQL MY1xx):

- destructive: DROP TABLE/VIEW/INDEX/SCHEMA/..., TRUNCATE, DELETE without WHERE, ALTER TABLE DROP COLUMN,
  RENAME of a table or column (readers of the old name break), MySQL RENAME TABLE.
- rewrite: UPDATE (with or without WHERE), DELETE with WHERE, MERGE, INSERT ... ON CONFLICT DO UPDATE,
  REPLACE, CREATE OR REPLACE of a view or function.
- locking (never on SQLite, where every write locks the whole database briefly): a column type change,
  ADD COLUMN NOT NULL without DEFAULT, SET NOT NULL, a PostgreSQL ADD COLUMN with a volatile default
  (a table rewrite), ADD CONSTRAINT without NOT VALID (every row is checked under the lock; a UNIQUE or
  PRIMARY KEY also fails on duplicates), DROP CONSTRAINT, PostgreSQL CREATE INDEX without CONCURRENTLY
  on a table the unit did not create, VACUUM FULL, CLUSTER, REINDEX, LOCK.
- unknown: a statement the parser cannot read (with its message), or reads only as an opaque command.
- safe: everything else (CREATE TABLE/INDEX/VIEW, INSERT, nullable ADD COLUMN, SELECT, ...).

Each finding may carry a probe: the read-only ``SELECT COUNT(...)`` that tells how many rows it touches.
Jinja (``{{ params.x }}``) is read as a placeholder identifier, so templated SQL is still analysed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DIALECTS = frozenset({"sqlite", "postgres", "mysql"})
# Airflow connection types -> sqlglot dialects.
CONN_TYPE_DIALECTS = {
    "sqlite": "sqlite",
    "postgres": "postgres",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
}
_JINJA_EXPR = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_JINJA_BLOCK = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.DOTALL)
PLACEHOLDER = "__jinja__"
_VOLATILE = frozenset({"random", "gen_random_uuid", "uuid_generate_v4", "clock_timestamp", "timeofday", "uuid", "rand"})
_DROP_KINDS_DESTRUCTIVE = frozenset(
    {"TABLE", "VIEW", "INDEX", "SCHEMA", "DATABASE", "SEQUENCE", "FUNCTION", "PROCEDURE", "TRIGGER", "TYPE"}
)
_WHERE = "rows match the WHERE"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # sqlglot underlines the bad token for terminals
_SAFE_COMMANDS = frozenset({"GRANT", "ANALYZE", "COMMENT", "SET", "BEGIN", "COMMIT", "SHOW", "EXPLAIN", "USE"})


@dataclass(frozen=True)
class SqlFinding:
    level: str
    reason: str
    probe: str | None = None  # a read-only COUNT query of what the statement touches
    probe_label: str | None = None  # what is counted: "table orders"
    noun: str = "rows"  # what the count is of: "rows", "rows match the WHERE", "non-null values"

    def describe(self, n: int) -> str:
        noun = self.noun.replace("rows", "row", 1) if n == 1 else self.noun
        noun = noun.replace("values", "value", 1) if n == 1 else noun
        noun = noun.replace(" match ", " matches ", 1) if n == 1 else noun
        return f"{self.probe_label}: {n:,} {noun}"


def dialect_of(conn_type: str | None) -> str | None:
    """The sqlglot dialect of an Airflow connection type, None when it is not a known SQL one."""
    return CONN_TYPE_DIALECTS.get((conn_type or "").lower())


def placeholder_jinja(sql: str) -> str:
    """Replace Jinja expressions by an identifier and drop Jinja blocks, so the parser can read the SQL."""
    return _JINJA_EXPR.sub(PLACEHOLDER, _JINJA_BLOCK.sub("", sql))


def short(sql: str, limit: int = 90) -> str:
    one = " ".join(sql.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


def analyse(statements: Sequence[str], dialect: str | None) -> list[SqlFinding]:
    """Every finding of ``statements`` (already split), read in ``dialect`` (None: generic)."""
    import sqlglot
    from sqlglot.errors import SqlglotError

    created: set[str] = set()
    out: list[SqlFinding] = []
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "falling back to a Command" is ours to report
    for raw in statements:
        text = placeholder_jinja(raw)
        try:
            trees = [t for t in sqlglot.parse(text, read=dialect) if t is not None]
        except SqlglotError as err:
            message = " ".join(_ANSI.sub("", str(err)).split())
            out.append(SqlFinding("unknown", f"{short(raw)}: the SQL parser cannot read it: {message}"))
            continue
        except Exception as err:  # sqlglot may raise plain errors on odd input: never silently safe
            out.append(SqlFinding("unknown", f"{short(raw)}: the SQL parser failed: {type(err).__name__}: {err}"))
            continue
        for tree in trees:
            found = _Statement(tree, short(raw), dialect, created).findings()
            out += [f for f in found if not (dialect == "sqlite" and f.level == "locking")]
    return out


class _Statement:
    """One parsed statement and the rules that apply to it."""

    def __init__(self, tree: Any, label: str, dialect: str | None, created: set[str]) -> None:
        self.tree = tree
        self.label = label
        self.dialect = dialect
        self.created = created  # tables created earlier in the same unit: nothing there yet to lock

    def findings(self) -> list[SqlFinding]:
        from sqlglot import exp

        tree = self.tree
        handlers: list[tuple[type, Any]] = [
            (exp.Drop, self._drop),
            (exp.TruncateTable, self._truncate),
            (exp.Delete, self._delete),
            (exp.Update, self._update),
            (exp.Merge, lambda: [self._at("rewrite", "MERGE changes existing rows")]),
            (exp.Insert, self._insert),
            (exp.Alter, self._alter),
            (exp.Create, self._create),
            (exp.Command, self._command),
        ]
        for kind, handler in handlers:
            if isinstance(tree, kind):
                return list(handler())
        if isinstance(tree, exp.Query | exp.Set | exp.Pragma | exp.Transaction | exp.Commit | exp.Use):
            return []
        if isinstance(tree, exp.Grant | exp.Comment | exp.Describe):
            return []
        return [self._at("unknown", f"not a statement the analysis knows ({type(tree).__name__}); declare 'risk:'")]

    # -- helpers ------------------------------------------------------------------------------

    def _at(
        self, level: str, why: str, probe: str | None = None, label: str | None = None, noun: str = "rows"
    ) -> SqlFinding:
        return SqlFinding(level, f"{self.label}: {why}", probe, label, noun)

    def _sql(self, node: Any) -> str:
        return str(node.sql(dialect=self.dialect))

    def _count(self, table: Any, where: Any = None, column: Any = None) -> str | None:
        """``SELECT COUNT(*) FROM table [WHERE ...]`` in the dialect; None when Jinja names the table."""
        from sqlglot import exp

        counted = exp.Count(this=exp.Star()) if column is None else exp.Count(this=column.copy())
        query = exp.select(counted).from_(table.copy())
        if where is not None:
            query = query.where(where.this.copy())
        sql = self._sql(query)
        return None if PLACEHOLDER in sql else sql  # Jinja not rendered: nothing to count yet

    def _table_name(self, table: Any) -> str:
        return self._sql(table)

    # -- rules --------------------------------------------------------------------------------

    def _drop(self) -> list[SqlFinding]:
        kind = str(self.tree.args.get("kind") or "").upper()
        tables = self.tree.args.get("tables") or ([self.tree.this] if self.tree.this is not None else [])
        if kind not in _DROP_KINDS_DESTRUCTIVE and not kind.endswith("VIEW"):
            return [self._at("destructive", f"drops a {kind.lower() or 'database object'}")]
        out = []
        for table in tables:
            name = self._table_name(table)
            if kind == "TABLE":
                probe = self._count(table)
                out.append(self._at("destructive", f"drops table {name} and every row in it", probe, f"table {name}"))
            else:
                out.append(self._at("destructive", f"drops {kind.lower()} {name}"))
        return out or [self._at("destructive", f"drops a {kind.lower()}")]

    def _truncate(self) -> list[SqlFinding]:
        out = []
        for table in self.tree.expressions:
            name = self._table_name(table)
            out.append(
                self._at("destructive", f"TRUNCATE deletes every row of {name}", self._count(table), f"table {name}")
            )
        return out

    def _delete(self) -> list[SqlFinding]:
        table, where = self.tree.this, self.tree.args.get("where")
        name = self._table_name(table)
        probe = self._count(table, where)
        if where is None:
            return [
                self._at("destructive", f"DELETE without WHERE deletes every row of {name}", probe, f"table {name}")
            ]
        return [self._at("rewrite", f"deletes the rows of {name} matching its WHERE", probe, f"table {name}", _WHERE)]

    def _update(self) -> list[SqlFinding]:
        table, where = self.tree.this, self.tree.args.get("where")
        name = self._table_name(table)
        probe = self._count(table, where)
        if where is None:
            return [self._at("rewrite", f"UPDATE without WHERE rewrites every row of {name}", probe, f"table {name}")]
        return [self._at("rewrite", f"updates the rows of {name} matching its WHERE", probe, f"table {name}", _WHERE)]

    def _insert(self) -> list[SqlFinding]:
        conflict = self.tree.args.get("conflict")
        if conflict is not None and (conflict.args.get("duplicate") or "UPDATE" in str(conflict.args.get("action"))):
            return [self._at("rewrite", "an upsert: updates the existing rows it conflicts with")]
        return []

    def _create(self) -> list[SqlFinding]:
        kind = str(self.tree.args.get("kind") or "").upper()
        if kind == "TABLE":
            from sqlglot import exp

            target = self.tree.this
            self.created.add(self._table_name(target.this if isinstance(target, exp.Schema) else target))
            return []
        if kind == "INDEX":
            return self._create_index()
        if self.tree.args.get("replace"):
            return [self._at("rewrite", f"CREATE OR REPLACE replaces the existing {kind.lower()} definition")]
        return []

    def _create_index(self) -> list[SqlFinding]:
        index = self.tree.this
        table = index.args.get("table")
        name = self._table_name(table) if table is not None else "?"
        unique = bool(self.tree.args.get("unique"))
        if name in self.created:
            return []
        if self.dialect in (None, "postgres") and not self.tree.args.get("concurrently"):
            extra = "; UNIQUE: fails if existing rows hold duplicates (data-dependent)" if unique else ""
            return [
                self._at(
                    "locking",
                    f"CREATE INDEX without CONCURRENTLY blocks writes to {name} while the index builds{extra}",
                )
            ]
        if unique and self.dialect == "mysql":
            return [self._at("locking", f"UNIQUE index on {name}: checks every row and fails on duplicates")]
        return []

    def _command(self) -> list[SqlFinding]:
        word = str(self.tree.this).upper()
        expression = self.tree.expression
        rest = str(getattr(expression, "this", expression) or "").upper()
        if word == "RENAME":
            return [self._at("destructive", "renames a table: readers of the old name break")]
        if word == "REPLACE":
            return [self._at("rewrite", "REPLACE deletes and re-inserts the rows it conflicts with")]
        if word in ("VACUUM", "CLUSTER", "REINDEX", "LOCK"):
            if word == "VACUUM" and "FULL" not in rest:
                return []
            if word == "REINDEX" and "CONCURRENTLY" in rest:
                return []
            return [self._at("locking", f"{word} holds an exclusive lock on the table")]
        if word in _SAFE_COMMANDS:
            return []
        if word == "ALTER":
            return [self._at("unknown", "an ALTER the parser reads only as an opaque command; declare 'risk:'")]
        return [self._at("unknown", f"{word}: the parser reads it only as an opaque command; declare 'risk:'")]

    def _alter(self) -> list[SqlFinding]:
        from sqlglot import exp

        table = self.tree.this
        name = self._table_name(table)
        new_table = name in self.created
        out: list[SqlFinding] = []
        for action in self.tree.args.get("actions") or []:
            if isinstance(action, exp.AlterRename):
                out.append(self._at("destructive", f"renames table {name}: readers of the old name break"))
            elif isinstance(action, exp.RenameColumn):
                out.append(self._at("destructive", f"renames a column of {name}: readers of the old name break"))
            elif isinstance(action, exp.Drop):
                out += self._alter_drop(table, name, action)
            elif isinstance(action, exp.ColumnDef):
                out += [] if new_table else self._add_column(name, action)
            elif isinstance(action, exp.AlterColumn):
                out += [] if new_table else self._alter_column(name, action)
            elif type(action).__name__ == "ModifyColumn":
                out.append(self._at("locking", f"MODIFY/CHANGE COLUMN on {name}: a type change copies the table"))
            elif isinstance(action, exp.AddConstraint):
                out += [] if new_table else self._add_constraint(name, action)
            elif isinstance(action, exp.AlterSet):
                out.append(self._at("locking", f"ALTER TABLE {name} SET ... may rewrite the table under a lock"))
            else:
                kind = type(action).__name__
                out.append(self._at("unknown", f"ALTER TABLE {name}: action {kind} is not analysed; declare 'risk:'"))
        return out

    def _alter_drop(self, table: Any, name: str, action: Any) -> list[SqlFinding]:
        kind = str(action.args.get("kind") or "COLUMN").upper()
        if kind in ("CONSTRAINT", "PRIMARY KEY", "FOREIGN KEY", "CHECK"):
            return [self._at("locking", f"drops a constraint of {name}: rows it rejected may then be written")]
        if kind == "INDEX":
            return [self._at("destructive", f"drops an index of {name}")]
        out = []
        for column in action.args.get("tables") or []:
            col = self._sql(column)
            probe = self._count(table, column=column)
            label = f"column {name}.{col}"
            why = f"drops column {col} of {name} and its values"
            out.append(self._at("destructive", why, probe, label, "non-null values"))
        return out

    def _add_column(self, name: str, column: Any) -> list[SqlFinding]:
        from sqlglot import exp

        kinds = [c.args.get("kind") for c in column.args.get("constraints") or []]
        not_null = any(isinstance(k, exp.NotNullColumnConstraint) and not k.args.get("allow_null") for k in kinds)
        default = next((k for k in kinds if isinstance(k, exp.DefaultColumnConstraint)), None)
        col = self._sql(column.this)
        if not_null and default is None:
            return [
                self._at(
                    "locking",
                    f"adds NOT NULL column {col} to {name} without a DEFAULT: every row is rewritten or checked "
                    f"(PostgreSQL fails when rows exist, MySQL fills an implicit default)",
                )
            ]
        if default is not None and self.dialect in (None, "postgres") and _volatile(default):
            return [self._at("locking", f"adds column {col} to {name} with a volatile DEFAULT: rewrites the table")]
        if any(isinstance(k, exp.PrimaryKeyColumnConstraint | exp.UniqueColumnConstraint) for k in kinds):
            return [self._at("locking", f"adds a unique column {col} to {name}: builds an index under a lock")]
        return []

    def _alter_column(self, name: str, action: Any) -> list[SqlFinding]:
        col = self._sql(action.this)
        if action.args.get("dtype") is not None:
            return [self._at("locking", f"changes the type of {name}.{col}: rewrites the table under a lock")]
        if action.args.get("allow_null") is False:
            return [self._at("locking", f"SET NOT NULL on {name}.{col}: scans every row under a lock; fails on NULLs")]
        return []

    def _add_constraint(self, name: str, action: Any) -> list[SqlFinding]:
        if self.tree.args.get("not_valid"):
            return []
        text = self._sql(action).upper()
        what = (
            "; UNIQUE/PRIMARY KEY: fails if rows hold duplicates" if ("UNIQUE" in text or "PRIMARY KEY" in text) else ""
        )
        hint = "" if what else " (add NOT VALID, then VALIDATE CONSTRAINT)"
        return [self._at("locking", f"adds a constraint to {name}: checks every row under a lock{what}{hint}")]


def _volatile(default: Any) -> bool:
    """True when a DEFAULT calls a volatile function (PostgreSQL then rewrites the table; Atlas PG302)."""
    from sqlglot import exp

    names = {str(n.this).lower() for n in default.find_all(exp.Anonymous)}
    names |= {n.sql_name().lower() for n in default.find_all(exp.Func)}
    return bool(names & _VOLATILE) or any(True for _ in default.find_all(exp.Rand))
