"""The audit-store protocol: an append-only log whose latest entry per change decides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from flamingock_provider.core.lease import Fence
from flamingock_provider.core.model import AuditEntry, TargetConfig

if TYPE_CHECKING:
    from flamingock_provider.core.targets import TargetSession

MAX_ERROR_BYTES = 16 * 1024


class AuditStore(Protocol):
    """Append-only audit log for every pipeline of one store.

    ``fence``: when the store also keeps the lease, the append must be conditional on the lease
    being held by that owner and token (raise LeaseLostError otherwise). ``tx``: a target session
    returned by :meth:`shared_target`; the entry is written inside that session's transaction.
    """

    def append(self, entry: AuditEntry, *, fence: Fence | None = None, tx: Any = None) -> AuditEntry:
        """Store one entry; return it with ``seq`` set."""

    def latest(self, pipeline: str) -> Mapping[str, AuditEntry]:
        """Return the latest entry of every change of ``pipeline`` in a constant number of queries."""

    def history(self, pipeline: str, change_id: str | None = None) -> Sequence[AuditEntry]:
        """Return entries oldest first."""

    def shared_target(self, target: TargetConfig) -> TargetSession | None:
        """Return a target session sharing the store's transaction (TX_SHARED), or None."""

    def close(self) -> None: ...


def truncate_utf8(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."
