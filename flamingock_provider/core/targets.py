"""Target systems as the engine sees them: a session per unit, transactions and markers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from flamingock_provider.core.model import TargetConfig

MARKER_TABLE = "flamingock_markers"  # per target `markers_table:` overrides it
MARKER_SCHEMA = "flamingock"  # PostgreSQL: the markers live here (created if missing), not in the search_path


def marker_table(config: TargetConfig) -> str:
    """The name of the target's marker table (or collection): ``markers_table:``, else ``flamingock_markers``."""
    return str(config.options.get("markers_table") or MARKER_TABLE)


class TargetSession(Protocol):
    """One unit's use of a target system.

    ``kind`` is the family templates are written for: ``sql``, ``mongo``, ``aws``, ``http`` or ``kafka``.
    ``native`` is what a Python unit sees as ``ctx.target`` (a DB-API connection, a pymongo
    ``Database``, a confluent-kafka ``AdminClient``, None for aws); ``session`` is ``ctx.session``
    (a pymongo ``ClientSession`` while transactional); ``hook`` is the Airflow hook, when there is one.
    """

    kind: str
    config: TargetConfig
    native: Any
    session: Any
    supports_transactions: bool

    @property
    def hook(self) -> Any:
        """The Airflow hook of the connection, built on first use."""

    def client(self, service: str) -> Any:
        """Return a configured client for ``service`` (boto3 for aws, admin/producer for kafka); else raise."""

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def write_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        """Record, inside the open transaction, that this change's apply committed (TX_SEPARATE)."""

    def has_marker(self, pipeline: str, change_id: str, execution_id: str) -> bool: ...

    def clear_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        """Delete the marker once the APPLIED entry is durable: it is needed only between the two."""

    def close(self) -> None: ...


TargetFactory = Callable[[TargetConfig], TargetSession]
