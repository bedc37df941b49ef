"""``flamingock rehearse``: the ``--scratch TARGET=CONN_ID`` flags and the human-readable report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flamingock_provider.exceptions import UsageError


def scratch_mapping(values: Sequence[str]) -> dict[str, str]:
    """``["warehouse=warehouse_scratch", ...]`` -> ``{"warehouse": "warehouse_scratch"}``; a bad value is a usage error."""
    mapping: dict[str, str] = {}
    for value in values:
        target, sep, conn_id = value.partition("=")
        target, conn_id = target.strip(), conn_id.strip()
        if not sep or not target or not conn_id:
            raise UsageError(f"--scratch {value!r}: write TARGET=CONN_ID, e.g. --scratch warehouse=warehouse_scratch")
        if target in mapping and mapping[target] != conn_id:
            raise UsageError(f"--scratch: target {target!r} is given twice ({mapping[target]!r} and {conn_id!r})")
        mapping[target] = conn_id
    return mapping


def render_rehearsal(doc: dict[str, Any]) -> str:
    """One line per unit per phase problem, then what was not rehearsed."""
    verdict = "rollbacks restore every target" if doc["ok"] else f"{len(doc['mismatches'])} problem(s)"
    out = [f"pipeline {doc['pipeline']}: rehearsed {len(doc.get('rehearsed', []))} change(s): {verdict}"]
    out += [f"  {m['id']}  {m['phase']}: {m['detail']}" for m in doc["mismatches"]]
    if doc["not_rehearsed"]:
        out.append(f"  not rehearsed (no snapshot of their target): {', '.join(doc['not_rehearsed'])}")
    return "\n".join(out)
