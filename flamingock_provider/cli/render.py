"""Human-readable output of command results: plain aligned tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=False)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def render_validate(doc: dict[str, Any]) -> str:
    out = [f"pipeline {doc['pipeline']}: {'valid' if doc['ok'] else 'INVALID'}"]
    for stage in doc["stages"]:
        out.append(f"  stage {stage['name']}: {', '.join(stage['changes']) or '(empty)'}")
    out += [f"ERROR   {e['file']}: {e['message']}" for e in doc["errors"]]
    out += [f"WARNING {w['file']}: {w['message']}" for w in doc["warnings"]]
    return "\n".join(out)


def render_status(doc: dict[str, Any]) -> str:
    rows = [[c["stage"], c["id"], c["state"] or "-", c["action"], c.get("fix") or ""] for c in doc["changes"]]
    lock = doc["lock"]
    holder = f"lock: held by {lock['owner']} until {lock['expires_at']}" if lock else "lock: free"
    return f"pipeline {doc['pipeline']}  {holder}\n" + table(["STAGE", "CHANGE", "STATE", "NEXT", "FIX"], rows)


def render_history(doc: dict[str, Any]) -> str:
    rows = [
        [
            e["created_at"],
            e["change_id"],
            e["action"],
            e["state"],
            e["execution_id"][:12],
            (e["error"] or {}).get("message", ""),
        ]
        for e in doc["entries"]
    ]
    return f"pipeline {doc['pipeline']}\n" + table(
        ["CREATED_AT", "CHANGE", "ACTION", "STATE", "EXECUTION", "ERROR"], rows
    )


def render_run(doc: dict[str, Any]) -> str:
    verb = "applied" if "applied" in doc else "rolled_back"
    out = [f"pipeline {doc['pipeline']}: {verb.replace('_', ' ')} {len(doc[verb])}, skipped {len(doc['skipped'])}"]
    out += [f"  {verb.replace('_', ' ')}: {cid}" for cid in doc[verb]]
    if doc.get("compensated"):
        out.append(f"  compensated (rolled back): {', '.join(doc['compensated'])}")
    if doc["failed"]:
        out.append(f"FAILED: change {doc['failed']['id']}: {doc['failed']['error']}")
    if doc["blocked"]:
        b = doc["blocked"]
        out.append(f"BLOCKED: change {b['id']} ({b['state']}): {b['reason']}\n  fix: {b['fix']}")
    return "\n".join(out)


def render_fix(doc: dict[str, Any]) -> str:
    return f"pipeline {doc['pipeline']}: change {doc['change_id']} recorded {doc['state']}"


def render_unlock(doc: dict[str, Any]) -> str:
    prev = doc["previous"]
    if not doc["released"]:
        return f"pipeline {doc['pipeline']}: lock was free"
    return f"pipeline {doc['pipeline']}: released the lease of {prev['owner']} (token {prev['token']})"
