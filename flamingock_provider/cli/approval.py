"""What ``apply``/``undo`` print when the run needs approval (exit 5): the plan, and how to approve it."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from flamingock_provider.cli import render
from flamingock_provider.exceptions import ApprovalRequiredError


def approval_document(args: argparse.Namespace, err: ApprovalRequiredError) -> dict[str, Any]:
    """The plan (or undo plan) the person is asked to approve, with ``approval_required`` and the gated units."""
    from flamingock_provider import commands

    if args.command == "undo":
        doc = commands.undo_plan(args.pipeline_dir, to=args.to, last=args.last)
    else:
        doc = commands.plan(args.pipeline_dir, sql=True)
    doc["approval_required"] = True
    doc["approval"] = {
        "required": err.required,
        "action": err.action,
        "units": [{"id": uid, "risk": risk} for uid, risk in err.units],
        "approve": approve_command(args),
    }
    return doc


def approve_command(args: argparse.Namespace) -> str:
    """The command line that runs the same command again, approved."""
    cmd = ["flamingock", args.command, args.pipeline_dir]
    if args.command == "undo":
        cmd += ["--to", args.to] if args.to is not None else ["--last", str(args.last)]
    elif args.until:
        cmd += ["--until", args.until]
    return shlex.join(cmd) + ' --approve "NOTE"'


def render_approval(doc: dict[str, Any]) -> str:
    """The plan, then which units need approval and the command that approves the run."""
    shown = render.render_undo_plan(doc) if "undo" in doc else render.render_plan(doc)
    approval = doc["approval"]
    units = ", ".join(f"{u['id']} ({u['risk']})" for u in approval["units"])
    return (
        f"{shown}\n\nAPPROVAL REQUIRED (approval.required: {approval['required']}): {units}\n"
        f"nothing was changed; to go on run: {approval['approve']}"
    )
