"""Top-level SQL statements: splitting a script, and what each statement's head says about it.

Splitting respects quotes, comments, PostgreSQL dollar-quoted bodies (``$$ ... $$``, ``$tag$``),
``DO`` blocks and MySQL ``BEGIN ... END`` routine bodies (sqlparse's splitter). Classification
reads only the first words of a top-level statement, after comments: the same words inside a
function body, a string or a comment are not executed at that point and never match.
"""

from __future__ import annotations

import re
from functools import lru_cache

from flamingock_provider.exceptions import ConfigurationError

HEAD_WORDS = 12
_PLAIN_PREFIX = re.compile(r"[^'\"`$#/\-\[]*")  # up to the first quote, dollar, comment or bracket
_WORD = re.compile(r"\w+|[^\w\s]")

# Statements PostgreSQL refuses inside a transaction block (matched against the head words).
_NO_TRANSACTION = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (r"CREATE( UNIQUE)? INDEX CONCURRENTLY\b", "CREATE INDEX CONCURRENTLY"),
        (r"DROP INDEX CONCURRENTLY\b", "DROP INDEX CONCURRENTLY"),
        (r"REINDEX\b.*\bCONCURRENTLY\b", "REINDEX CONCURRENTLY"),
        (r"REINDEX (SYSTEM|DATABASE)\b", "REINDEX SYSTEM / DATABASE"),
        (r"VACUUM\b", "VACUUM"),
        (r"(CREATE|DROP) DATABASE\b", "CREATE / DROP DATABASE"),
        (r"ALTER DATABASE \S+ SET TABLESPACE\b", "ALTER DATABASE ... SET TABLESPACE"),
        (r"(CREATE|DROP) TABLESPACE\b", "CREATE / DROP TABLESPACE"),
        (r"ALTER SYSTEM\b", "ALTER SYSTEM"),
        (r"(CREATE|DROP) SUBSCRIPTION\b", "CREATE / DROP SUBSCRIPTION"),
        (r"CLUSTER( VERBOSE)?$", "CLUSTER without a table"),
    )
)
# BEGIN/COMMIT inside a unit would end the engine's transaction (and the audit entries in it) early.
_TRANSACTION_CONTROL = re.compile(r"(BEGIN|START TRANSACTION|COMMIT|ROLLBACK|END)( WORK| TRANSACTION)?$")
_ADD_ENUM_VALUE = re.compile(r"ALTER TYPE \S+ ADD VALUE\b")

# MySQL/MariaDB statements that commit the open transaction implicitly (DDL and friends).
_IMPLICIT_COMMIT = re.compile(
    r"(CREATE|ALTER|DROP|RENAME|TRUNCATE|GRANT|REVOKE|LOCK|UNLOCK|ANALYZE|OPTIMIZE|REPAIR|FLUSH|INSTALL|"
    r"UNINSTALL|CACHE INDEX|LOAD INDEX|SET PASSWORD)\b"
)
_TEMPORARY_TABLE = re.compile(r"(CREATE|DROP) TEMPORARY TABLE\b")


def split_statements(sql: str) -> list[str]:
    """Split a script into top-level statements; comment-only pieces are dropped."""
    return list(_split(sql))


@lru_cache(maxsize=4096)
def _split(sql: str) -> tuple[str, ...]:
    # Cached: a unit's statements are split when the folder is parsed and again when the unit runs.
    if ";" not in sql:  # one statement (or none): nothing to split, whatever quotes or bodies it holds
        statement = sql.strip()
        return (statement,) if statement and head(statement) else ()
    import sqlparse

    out = []
    for piece in sqlparse.split(sql):
        statement = piece.strip()
        while statement.endswith(";"):
            statement = statement[:-1].rstrip()
        if statement and head(statement):
            out.append(statement)
    return tuple(out)


@lru_cache(maxsize=8192)
def head(statement: str, words: int = HEAD_WORDS) -> str:
    """The statement's first words, upper-cased, without comments, strings or quoted bodies.

    A statement whose first words hold no quote, comment or dollar sign is read with one regex;
    otherwise sqlparse's lexer runs (no grouping) and stops after ``words`` tokens.
    """
    prefix = _PLAIN_PREFIX.match(statement)
    plain = _WORD.findall(prefix.group(0)) if prefix else []
    if len(plain) >= words or (prefix is not None and prefix.end() == len(statement)):
        return " ".join("?" if token.isdigit() else token.upper() for token in plain[:words])
    from sqlparse import lexer
    from sqlparse import tokens as T

    out: list[str] = []
    for ttype, value in lexer.tokenize(statement):
        if ttype in T.Whitespace or ttype in T.Newline or ttype in T.Comment:
            continue
        out.append("?" if ttype in T.Literal else value.upper())
        if len(out) >= words:
            break
    return re.sub(r"\s+", " ", " ".join(out)).strip()


def preview(statement: str, limit: int = 80) -> str:
    """The statement on one line, cut to ``limit`` characters, for messages."""
    flat = re.sub(r"\s+", " ", statement).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def outside_transaction(statement: str, *, server_version: int | None = None) -> str | None:
    """Why ``statement`` cannot run inside a transaction block (PostgreSQL), or None when it can.

    ``ALTER TYPE ... ADD VALUE`` only counts before PostgreSQL 12 (``server_version`` < 120000);
    at parse time the version is unknown and it is allowed.
    """
    words = head(statement)
    for pattern, name in _NO_TRANSACTION:
        if pattern.match(words):
            return name
    if server_version is not None and server_version < 120000 and _ADD_ENUM_VALUE.match(words):
        return "ALTER TYPE ... ADD VALUE before PostgreSQL 12"
    return None


def commits_implicitly(statement: str) -> bool:
    """True when MySQL/MariaDB commits the open transaction around ``statement`` (DDL)."""
    words = head(statement)
    return bool(_IMPLICIT_COMMIT.match(words)) and not _TEMPORARY_TABLE.match(words)


def delimiter_problem(statement: str) -> str | None:
    """A message when ``statement`` is a mysql-client ``DELIMITER`` command, else None."""
    first = statement.lstrip().split(None, 1)
    if not first or first[0].upper() != "DELIMITER":
        return None
    return (
        f"statement {preview(statement)!r}: DELIMITER is a command of the mysql client, not SQL; remove the "
        "DELIMITER lines and write each routine as one statement ending in 'END;' (statements are split on "
        "top-level ';' and a BEGIN ... END body stays whole)"
    )


def transaction_problems(statements: list[str]) -> list[str]:
    """Parse-time problems of statements meant to run in a transaction (no target known yet)."""
    problems = []
    for statement in statements:
        delimiter = delimiter_problem(statement)
        if delimiter:
            problems.append(delimiter)
            continue
        if _TRANSACTION_CONTROL.match(head(statement)):
            problems.append(
                f"statement {preview(statement)!r}: the engine begins and commits a transactional unit's "
                "transaction itself; remove it, or set 'transactional: false' on this unit"
            )
            continue
        why = outside_transaction(statement)
        if why:
            problems.append(
                f"statement {preview(statement)!r} ({why}) cannot run inside a transaction; set "
                "'transactional: false' on this unit (and keep such statements in units of their own)"
            )
    return problems


def check_runnable(statements: list[str], *, transactional: bool, server_version: int | None) -> None:
    """Refuse, before anything runs, statements that would fail in the way this unit runs them."""
    for statement in statements:
        delimiter = delimiter_problem(statement)
        if delimiter:
            raise ConfigurationError(delimiter)
        why = outside_transaction(statement, server_version=server_version) if transactional else None
        if why:
            raise ConfigurationError(
                f"statement {preview(statement)!r} ({why}) cannot run inside a transaction; set "
                "'transactional: false' on this unit"
            )
