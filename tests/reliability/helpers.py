"""Shared helpers of the reliability suite: counts, the tally, pipelines, and the audit/target verdict.

The verdict compares what the audit log says with what the targets show, unit by unit:

- *duplicate*: a unit with more than one applied entry, more than one ledger record, or a record
  written by another execution than the one the audit log credits with it;
- *lost*: a unit that should be applied but whose audit log or target does not show it.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from flamingock_provider.core.model import APPLIED_STATES, Action, AuditEntry, State
from tests.conftest import write_tree
from tests.reliability.backends import Backend, UnitSpec

FULL_ENV = "FLAMINGOCK_RELIABILITY_FULL"


@dataclass(frozen=True)
class Counts:
    """How hard each scenario pushes (``make test``: reduced; ``make reliability``: full)."""

    processes: int  # concurrent runners per race
    units: int  # units per race pipeline
    repeats: int  # races per backend
    kills: int  # SIGKILLs per backend
    takeovers: int  # frozen holders per backend and freeze point
    outages: int  # store outages per backend
    skewed: int  # runners with skewed clocks per backend
    fuzz_examples: int  # hypothesis examples of the loader fuzz


REDUCED = Counts(processes=4, units=12, repeats=1, kills=4, takeovers=1, outages=1, skewed=4, fuzz_examples=60)
FULL = Counts(processes=8, units=50, repeats=10, kills=30, takeovers=5, outages=3, skewed=6, fuzz_examples=1500)


def full_mode() -> bool:
    return os.environ.get(FULL_ENV) == "1"


def counts() -> Counts:
    return FULL if full_mode() else REDUCED


@dataclass
class Tally:
    """Figures of a scenario run, summed per backend by ``bench/faults.py``."""

    runs: int = 0  # runner processes started
    kills: int = 0
    takeovers: int = 0
    outages: int = 0
    inputs: int = 0
    duplicates: int = 0
    lost: int = 0
    problems: list[str] = field(default_factory=list)

    def __iadd__(self, other: Tally) -> Tally:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def assert_clean(self) -> None:
        assert (self.duplicates, self.lost) == (0, 0), "\n".join(self.problems)


def unique(prefix: str) -> str:
    """A pipeline id no earlier run used (stores and servers are shared by a whole session)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def write_pipeline(
    backend: Backend, parent: Path, specs: Sequence[UnitSpec], *, prefix: str, lease_s: float, wait_s: float = 300.0
) -> Path:
    """Write a pipeline folder of ``specs`` (one unit file each, in order) for ``backend``."""
    name = unique(prefix)
    backend.prepare_pipeline(name)
    files = {"pipeline.yaml": backend.header(name, lease_s=lease_s, wait_s=wait_s)}
    for order, spec in enumerate(specs, 1):
        extension, text = backend.unit_file(name, spec)
        files[f"{order:04d}_{spec.id}.{extension}"] = text
    return write_tree(parent / name, files)


def by_change(entries: Iterable[AuditEntry]) -> dict[str, list[AuditEntry]]:
    grouped: dict[str, list[AuditEntry]] = defaultdict(list)
    for entry in entries:
        grouped[entry.change_id].append(entry)
    return grouped


def applied(entries: Sequence[AuditEntry]) -> bool:
    return bool(entries) and entries[-1].state in APPLIED_STATES


def verdict(backend: Backend, pipeline: str, unit_ids: Sequence[str]) -> Tally:
    """Count duplicates and lost units of ``pipeline`` (every unit is expected applied, once)."""
    tally = Tally()
    history = by_change(backend.history(pipeline))
    ledger = backend.ledger(pipeline)
    for unit in unit_ids:
        entries, records = history.get(unit, []), ledger.get(unit, [])
        applies = [e for e in entries if e.state in APPLIED_STATES]
        extra = max(0, len(applies) - 1) + max(0, len(records) - 1)
        credited = _credited_execution(entries)
        if records and credited is not None and records[-1].run != credited:
            extra += 1
            tally.problems.append(f"{pipeline}/{unit}: target written by {records[-1].run}, audit credits {credited}")
        if extra:
            tally.problems.append(f"{pipeline}/{unit}: applied twice ({len(applies)} entries, {len(records)} records)")
        tally.duplicates += extra
        if not applied(entries) or not records:
            tally.lost += 1
            states = [e.state.value for e in entries]
            tally.problems.append(f"{pipeline}/{unit}: not applied (audit {states}, {len(records)} records)")
    return tally


def _credited_execution(entries: Sequence[AuditEntry]) -> str | None:
    """The execution whose apply the audit log counts: the last STARTED of an apply (or TX_SHARED's)."""
    started = [e for e in entries if e.state is State.STARTED and e.action is Action.APPLY]
    if started:
        return started[-1].execution_id
    return next((e.execution_id for e in reversed(entries) if e.state is State.APPLIED), None)


def contiguous_executions(entries: Sequence[AuditEntry]) -> bool:
    """True when no execution's audit entries interleave with another's (one holder at a time)."""
    order: list[str] = []
    for entry in entries:
        if not order or order[-1] != entry.execution_id:
            order.append(entry.execution_id)
    return len(order) == len(set(order))


def final_states(backend: Backend, pipeline: str) -> Mapping[str, State]:
    return {unit: entries[-1].state for unit, entries in by_change(backend.history(pipeline)).items()}
