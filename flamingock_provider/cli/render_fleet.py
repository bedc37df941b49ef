"""Human output of fleet documents (SPEC §13): one line per member with counts, then the ones that need a person."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any


def is_fleet(doc: dict[str, Any]) -> bool:
    """A whole-fleet document (``members`` rows), not one member's."""
    return isinstance(doc.get("members"), list)


def render_fleet_run(doc: dict[str, Any]) -> str:
    """``apply`` of every member: counts per member, then each failed or blocked member in detail."""
    out = [f"pipeline {doc['pipeline']}: {len(doc['members'])} member(s) ran"]
    for row in doc["members"]:
        outcome = "FAILED" if row["failed"] else "BLOCKED" if row["blocked"] else "ok"
        out.append(f"  {row['member']}: applied {len(row['applied'])}, skipped {len(row['skipped'])}  {outcome}")
    if doc.get("not_started"):  # a halt in the last wave stops nothing: said only when members were left out
        halted = doc.get("halted_after_wave")
        why = f" (halted after wave {halted}, on_error: halt)" if halted is not None else ""
        out.append(f"not started{why}: {', '.join(doc['not_started'])}")
    for row in doc["members"]:
        if row["failed"]:
            change = row["failed"]["id"]
            what = f"change {change}" if change else "before its first change"
            out.append(f"FAILED: member {row['member']}: {what}: {row['failed']['error']}")
        if row["blocked"]:
            b = row["blocked"]
            out.append(
                f"BLOCKED: member {row['member']}: change {b['id']} ({b['state']}): {b['reason']}\n  fix: {b['fix']}"
            )
    return "\n".join(out)


def render_fleet_matrix(doc: dict[str, Any]) -> str:
    """``status``/``plan`` of every member: next-action counts and the lock per member, then blocked cells."""
    out = [f"pipeline {doc['pipeline']}: {len(doc['members'])} member(s)"]
    for row in doc["members"]:
        counts = Counter(c["action"] for c in row["changes"])
        shown = ", ".join(
            f"{action} {counts[action]}" for action in ("apply", "skip", "blocked", "running") if counts[action]
        )
        lock = f"  lock: {row['lock']['owner']}" if row["lock"] else ""
        out.append(f"  {row['member']}: {shown or 'no changes'}{lock}")
    for row in doc["members"]:
        for change in row["changes"]:
            if change["action"] == "blocked":
                out.append(
                    f"BLOCKED: member {row['member']}: change {change['id']} ({change['state']}): {change['reason']}"
                )
                out.append(f"  fix: {change['fix']}")
    return "\n".join(out)


def fleet_aware(
    single: Callable[[dict[str, Any]], str], fleet: Callable[[dict[str, Any]], str]
) -> Callable[[dict[str, Any]], str]:
    """The renderer for a command whose document is either one pipeline's (or member's) or a fleet's."""

    def render(doc: dict[str, Any]) -> str:
        if is_fleet(doc):
            return fleet(doc)
        text = single(doc)
        return f"member {doc['member']}: {text}" if doc.get("member") else text

    return render


def fleet_exit_code(doc: dict[str, Any]) -> int:
    """A fleet apply: 1 when a member failed, else 4 when one is blocked, else 0."""
    rows = doc["members"]
    return 1 if any(r["failed"] for r in rows) else 4 if any(r["blocked"] for r in rows) else 0
