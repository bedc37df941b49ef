"""What ``apply``/``undo`` print when the run needs approval (exit 5): the plan, and how to approve it."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from flamingock_provider.cli import render
from flamingock_provider.cli.render_fleet import is_fleet, render_fleet_matrix
from flamingock_provider.commandline import member_flag
from flamingock_provider.exceptions import ApprovalRequiredError


def approval_document(args: argparse.Namespace, err: ApprovalRequiredError) -> dict[str, Any]:
    """The plan (or undo plan) the person is asked to approve, with ``approval_required`` and the gated units."""
    from flamingock_provider import commands

    member = getattr(args, "member", None)
    if args.command == "undo":
        doc = commands.undo_plan(args.pipeline_dir, to=args.to, last=args.last, member=member)
    else:
        doc = commands.plan(args.pipeline_dir, sql=True, member=member)  # a whole fleet's: the member matrix
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
    return shlex.join(cmd + member_flag(getattr(args, "member", None))) + ' --approve "NOTE"'


def render_approval(doc: dict[str, Any]) -> str:
    """The plan, then which units need approval and the command that approves the run."""
    if "undo" in doc:
        shown = render.render_undo_plan(doc)
    else:
        shown = render_fleet_matrix(doc) if is_fleet(doc) else render.render_plan(doc)
    if doc.get("member"):
        shown = f"member {doc['member']}: {shown}"
    approval = doc["approval"]
    units = ", ".join(f"{u['id']} ({u['risk']})" for u in approval["units"])
    return (
        f"{shown}\n\nAPPROVAL REQUIRED (approval.required: {approval['required']}): {units}\n"
        f"nothing was changed; to go on run: {approval['approve']}"
    )
