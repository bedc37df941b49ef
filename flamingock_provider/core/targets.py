"""Target systems as the engine sees them: a session per unit, transactions and markers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from flamingock_provider.core.model import TargetConfig

MARKER_TABLE = "flamingock_markers"


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

    def close(self) -> None: ...


TargetFactory = Callable[[TargetConfig], TargetSession]
