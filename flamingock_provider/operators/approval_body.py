"""The markdown an approver reads in Airflow's required-actions page: the plan of the run they approve."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from flamingock_provider.core.approval import Gated
from flamingock_provider.core.model import ApprovalConfig, ChangeUnit

MAX_SHOWN_CHARS = 4000  # per unit: a long data payload is cut, the approver sees where


def approval_subject(pipeline_id: str, action: str, gated: Sequence[Gated]) -> str:
    verb = "undo" if action == "undo" else "apply"
    levels = sorted({g.risk for g in gated})
    return f"Approve {verb} of pipeline {pipeline_id}: {len(gated)} change(s) need approval ({', '.join(levels)})"


def approval_body(
    pipeline_id: str,
    config: ApprovalConfig,
    action: str,
    units: Sequence[ChangeUnit],
    gated: Sequence[Gated],
    details: Mapping[str, Mapping[str, Any]],
) -> str:
    """Each unit the run would apply (or undo) with its risk, impact and rendered statements, in run order."""
    needs = {g.unit_id for g in gated}
    verb = "roll back (undo, newest first)" if action == "undo" else "apply"
    out = [
        f"Pipeline **{pipeline_id}** would {verb} {len(units)} change(s); "
        f"`approval.required: {config.required.value}` asks for yours on {len(needs)}. "
        "Approve to go on (every audit entry of the run records you and your note); Reject to fail the run "
        "with nothing applied or undone.",
        "",
        "| change | stage | risk | impact | needs approval |",
        "| --- | --- | --- | --- | --- |",
    ]
    for unit in units:
        d = details.get(unit.id, {})
        mark = "**yes**" if unit.id in needs else "no"
        out.append(f"| `{unit.id}` | {unit.stage} | {d.get('risk', '-')} | {d.get('impact') or '-'} | {mark} |")
    for unit in units:
        d = details.get(unit.id, {})
        out += ["", f"#### `{unit.id}` ({unit.source_file}) — {d.get('risk', '-')}"]
        out += [f"- {reason}" for reason in d.get("reasons") or []]
        out += _code(d.get("rendered"))
    return "\n".join(out)


def _code(rendered: Any) -> list[str]:
    if rendered is None:
        return ["", "_Python unit: its code is not a payload; read the file._"]
    if isinstance(rendered, list) and all(isinstance(s, str) for s in rendered):
        text, lang = "\n".join(f"{s.rstrip().rstrip(';')};" for s in rendered), "sql"
    else:
        text, lang = json.dumps(rendered, indent=2, default=str), "json"
    if len(text) > MAX_SHOWN_CHARS:
        text = text[:MAX_SHOWN_CHARS] + f"\n... ({len(text) - MAX_SHOWN_CHARS} more characters)"
    return ["", f"```{lang}", text, "```"]
