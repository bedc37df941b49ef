"""The ``sql`` template: statements (a string or a list) or a ``file:`` of statements."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.core.template import Template
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.templates.sql_statements import (
    check_runnable,
    commits_implicitly,
    split_statements,
    transaction_problems,
)

__all__ = ["SqlTemplate", "split_statements"]


class SqlTemplate(Template):
    name = "sql"
    target_kind = "sql"
    transactional = True
    apply_keys = frozenset({"statements", "file"})
    rollback_keys = frozenset({"statements", "file"})

    def validate(self, apply: Mapping[str, Any], rollback: Mapping[str, Any] | None) -> list[str]:
        problems = super().validate(apply, rollback)
        for where, payload in (("apply", apply), ("rollback", rollback)):
            if payload is not None:
                problems += _check_payload(where, payload)
        return problems

    def transaction_problems(self, apply: Mapping[str, Any], root: Path) -> list[str]:
        return transaction_problems(raw_statements(apply, root))

    def is_transactional_on(self, apply: Mapping[str, Any], session: Any, root: Path) -> bool:
        """MySQL/MariaDB commit DDL implicitly: a unit with DDL there runs NON_TX, never claimed atomic."""
        if getattr(session, "dialect", None) == "mysql":
            return not any(commits_implicitly(s) for s in raw_statements(apply, root))
        return True

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        _execute(ctx, payload)
        return None

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> list[tuple[str, str]]:
        from flamingock_provider.templates._sql_risk import analyse

        if "statements" not in apply:
            return [("unknown", f"file {apply.get('file')!r} could not be read for analysis")]
        raw = apply["statements"]
        statements = [s for chunk in ([raw] if isinstance(raw, str) else raw) for s in split_statements(chunk)]
        return [(f.level, f.reason) for f in analyse(statements, dialect)]

    def rendered(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        return _statements(ctx, payload)

    def impact(self, ctx: ChangeContext, payload: Mapping[str, Any], *, timeout: float) -> str | None:
        """Count the rows the rewrite and destructive statements touch."""
        from flamingock_provider.targets.sql_reads import count, dialect_of_connection
        from flamingock_provider.templates._sql_risk import analyse

        session = ctx.target_session
        if session is None or session.kind != "sql":
            return None
        conn = session.native
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        for finding in analyse(_statements(ctx, payload), dialect_of_connection(conn)):
            if finding.probe is None or finding.level not in ("rewrite", "destructive"):
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            seen.append(finding.describe(count(conn, finding.probe, left)))
        return "; ".join(dict.fromkeys(seen)) or None

    def rollback(
        self,
        ctx: ChangeContext,
        payload: Mapping[str, Any],
        rollback: Mapping[str, Any] | None,
        undo_state: Any,
    ) -> None:
        if rollback is None:
            raise ConfigurationError(
                f"change {ctx.change.id!r}: the sql template derives no rollback; give 'rollback: {{statements: ...}}'"
            )
        _execute(ctx, rollback)


def _check_payload(where: str, payload: Mapping[str, Any]) -> list[str]:
    has_statements, has_file = "statements" in payload, "file" in payload
    if has_statements == has_file:
        return [f"field '{where}': give exactly one of 'statements' or 'file'"]
    if has_file and not isinstance(payload["file"], str):
        return [f"field '{where}.file': expected a relative path string, got {payload['file']!r}"]
    statements = payload.get("statements")
    if has_statements and not (
        isinstance(statements, str) or (isinstance(statements, list) and all(isinstance(s, str) for s in statements))
    ):
        return [f"field '{where}.statements': expected a string or a list of strings, got {statements!r}"]
    return []


def raw_statements(payload: Mapping[str, Any], root: Path) -> list[str]:
    """The payload's statements before Jinja rendering (for parse-time checks); [] when unreadable."""
    if "file" in payload:
        try:
            return split_statements((Path(root) / payload["file"]).read_text(encoding="utf-8"))
        except (OSError, UnicodeError, TypeError):
            return []  # the loader reports a missing or unreadable payload file
    raw = payload.get("statements")
    chunks = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else []
    return [s for chunk in chunks if isinstance(chunk, str) for s in split_statements(chunk)]


def _statements(ctx: ChangeContext, payload: Mapping[str, Any]) -> list[str]:
    if "file" in payload:
        text = (Path(ctx.pipeline.path) / payload["file"]).read_text(encoding="utf-8")
        return split_statements(str(ctx.render(text)))
    raw = payload["statements"]
    chunks = [raw] if isinstance(raw, str) else list(raw)
    return [s for chunk in chunks for s in split_statements(chunk)]


def _execute(ctx: ChangeContext, payload: Mapping[str, Any]) -> None:
    session = ctx.target_session
    if session is None or session.kind != "sql":
        kind = session.kind if session else "none"
        raise ConfigurationError(
            f"change {ctx.change.id!r}: template 'sql' needs a SQL target, got {kind!r}; point 'target:' at a "
            f"database connection"
        )
    statements = _statements(ctx, payload)
    check_runnable(
        statements,
        transactional=bool(getattr(session, "in_transaction", False)),
        server_version=getattr(session, "server_version", None),
    )
    for statement in statements:
        session.execute(statement)  # type: ignore[attr-defined]
