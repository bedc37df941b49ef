"""Human-readable output of command results: plain aligned tables."""

from __future__ import annotations

import json
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
    if doc.get("risks"):
        out.append(
            table(["CHANGE", "RISK", "REASONS"], [[r["id"], r["risk"], _reasons(r["reasons"])] for r in doc["risks"]])
        )
    out += [f"ERROR   {e['file']}: {e['message']}" for e in doc["errors"]]
    out += [f"WARNING {w['file']}: {w['message']}" for w in doc["warnings"]]
    return "\n".join(out)


def _reasons(reasons: Sequence[str], limit: int = 100) -> str:
    text = " | ".join(reasons)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _holder(doc: dict[str, Any]) -> str:
    lock = doc["lock"]
    return f"lock: held by {lock['owner']} until {lock['expires_at']}" if lock else "lock: free"


def render_status(doc: dict[str, Any]) -> str:
    rows = [
        [c["stage"], c["id"], c["state"] or "-", c["action"], c.get("risk") or "", c.get("fix") or ""]
        for c in doc["changes"]
    ]
    headers = ["STAGE", "CHANGE", "STATE", "NEXT", "RISK", "FIX"]
    return f"pipeline {doc['pipeline']}  {_holder(doc)}\n" + table(headers, rows)


def render_plan(doc: dict[str, Any]) -> str:
    """The plan table, then each risky unit's reasons, then (with --sql) what apply would send."""
    rows = [
        [c["stage"], c["id"], c["state"] or "-", c["action"], c["risk"], c.get("impact") or "", c.get("fix") or ""]
        for c in doc["changes"]
    ]
    out = [f"pipeline {doc['pipeline']}  {_holder(doc)}"]
    out.append(table(["STAGE", "CHANGE", "STATE", "NEXT", "RISK", "IMPACT", "FIX"], rows))
    risky = [c for c in doc["changes"] if c["action"] == "apply" and c.get("reasons")]
    if risky:
        out.append("\nwhy:")
        out += [f"  {c['id']}: {reason}" for c in risky for reason in c["reasons"]]
    for c in doc["changes"]:
        if "rendered" in c and c["action"] == "apply":
            out.append(f"\n-- {c['id']} ({c['stage']}): {c['risk']}")
            out.append(_shown(c["rendered"]))
    return "\n".join(out)


def _shown(rendered: Any) -> str:
    if rendered is None:
        return "   (Python unit: its apply(ctx) is code, not a payload)"
    if isinstance(rendered, list) and all(isinstance(s, str) for s in rendered):
        return "\n".join(f"{s};" for s in rendered)
    return json.dumps(rendered, indent=2, default=str)


def render_undo_plan(doc: dict[str, Any]) -> str:
    if not doc["undo"]:
        return f"pipeline {doc['pipeline']}: undo would roll back nothing"
    out = [f"pipeline {doc['pipeline']}: undo would roll back, newest first:"]
    for u in doc["undo"]:
        out.append(f"\n-- {u['id']} ({u['stage']}): {u['risk']}")
        out.append(_shown(u["rollback"]) if u["rollback"] is not None else "   (no rollback)")
    return "\n".join(out)


def render_history(doc: dict[str, Any]) -> str:
    rows = [
        [
            e["created_at"],
            e["change_id"],
            e["action"],
            e["state"],
            e["execution_id"][:12],
            e.get("approved_by") or "",
            (e.get("bundle_version") or "")[:12],
            (e["error"] or {}).get("message", ""),
        ]
        for e in doc["entries"]
    ]
    return f"pipeline {doc['pipeline']}\n" + table(
        ["CREATED_AT", "CHANGE", "ACTION", "STATE", "EXECUTION", "APPROVED_BY", "BUNDLE", "ERROR"], rows
    )


def render_run(doc: dict[str, Any]) -> str:
    verb = "applied" if "applied" in doc else "rolled_back"
    out = [f"pipeline {doc['pipeline']}: {verb.replace('_', ' ')} {len(doc[verb])}, skipped {len(doc['skipped'])}"]
    out += [f"  {verb.replace('_', ' ')}: {cid}" for cid in doc[verb]]
    said_no = {cid: outcome for cid, outcome in (doc.get("checks") or {}).items() if outcome != "passed"}
    out += [f"  preconditions of {cid}: {outcome}" for cid, outcome in said_no.items()]
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
