"""Audit sinks: receive every audit entry once it is durably written (log shipping, metrics).

A sink is a callable ``sink(entry: AuditEntry) -> None``. Sinks register in the entry-point group
``flamingock.audit_sinks`` and are enabled by name in ``FLAMINGOCK_AUDIT_SINKS`` (comma separated).
The built-in ``jsonl`` sink appends one JSON document per entry to ``FLAMINGOCK_AUDIT_JSONL``
(default ``$FLAMINGOCK_HOME/audit.jsonl``) for ELK-style shipping. A failing sink is logged and
never fails a change: the audit store, not the sink, is the record.

Higher layers switch a sink on by themselves with :func:`register_automatic` (the Airflow operators
register Airflow metrics, :mod:`flamingock_provider.metrics`), so that core never imports them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from flamingock_provider.core.model import AuditEntry

ENTRY_POINT_GROUP = "flamingock.audit_sinks"
Sink = Callable[[AuditEntry], None]
log = logging.getLogger("flamingock.sinks")
# name -> factory returning a sink, or None where it does not apply (e.g. Airflow metrics are off)
_automatic: dict[str, Callable[[], Sink | None]] = {}


class JsonLinesSink:
    """Append each entry as one JSON line (POSIX append writes keep lines whole across processes)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._guard = threading.Lock()

    def __call__(self, entry: AuditEntry) -> None:
        line = json.dumps(entry.to_dict(), default=str, separators=(",", ":")) + "\n"
        with self._guard:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)


def _default_jsonl_path() -> Path:
    from flamingock_provider.core.paths import flamingock_home

    return Path(os.environ.get("FLAMINGOCK_AUDIT_JSONL") or flamingock_home() / "audit.jsonl")


def register_automatic(name: str, factory: Callable[[], Sink | None]) -> None:
    """Add a sink to every runner of this process; ``factory`` returns None where it does not apply."""
    _automatic[name] = factory


def _automatic_sinks() -> list[Sink]:
    sinks: list[Sink] = []
    for name, factory in _automatic.items():
        try:
            sink = factory()
        except Exception:
            log.warning("automatic audit sink %r could not be set up; ignored", name, exc_info=True)
            continue
        if sink is not None:
            sinks.append(sink)
    return sinks


def configured_sinks(names: str | None = None) -> list[Sink]:
    """Build the sinks named in ``FLAMINGOCK_AUDIT_SINKS`` (or ``names``), then the automatic ones."""
    wanted = [
        n.strip() for n in (names if names is not None else os.environ.get("FLAMINGOCK_AUDIT_SINKS", "")).split(",")
    ]
    sinks: list[Sink] = []
    for name in filter(None, wanted):
        if name == "jsonl":
            sinks.append(JsonLinesSink(_default_jsonl_path()))
            continue
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            log.warning("audit sink %r is not installed (entry-point group %s); ignored", name, ENTRY_POINT_GROUP)
            continue
        sinks.append(found[0].load()())
    return sinks + _automatic_sinks()


def emit(sinks: Sequence[Sink], entry: AuditEntry) -> None:
    """Hand ``entry`` to every sink; a sink's failure is logged, never raised."""
    for sink in sinks:
        try:
            sink(entry)
        except Exception:
            log.warning("audit sink %r failed for %s/%s", sink, entry.change_id, entry.state.value, exc_info=True)
