"""``flamingock COMMAND PIPELINE_DIR [options]`` — exit codes: 0 ok, 1 failed, 2 usage, 3 lock, 4 blocked, 5 approval."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from flamingock_provider.cli import render
from flamingock_provider.cli.rehearsal import render_rehearsal, scratch_mapping
from flamingock_provider.cli.render_fleet import (
    fleet_aware,
    fleet_exit_code,
    is_fleet,
    render_fleet_matrix,
    render_fleet_run,
)
from flamingock_provider.commandline import FIX_STATES
from flamingock_provider.exceptions import ApprovalRequiredError, FlamingockError, PipelineValidationError

# A whole fleet's document (no --member) per command; every other document is one pipeline's or member's.
FLEET_RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "plan": render_fleet_matrix,
    "status": render_fleet_matrix,
    "apply": render_fleet_run,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors exit 2 with our prefix
        self.print_usage(sys.stderr)
        print(f"FAILED: {message}; see `flamingock --help`", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flamingock", description="Versioned, audited, lock-protected changes.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument("pipeline_dir", metavar="PIPELINE_DIR", help="the pipeline folder")
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--traceback", action="store_true", help="show the Python traceback on errors")
    common.add_argument("-v", "--verbose", action="store_true", help="log each step")
    common.add_argument("--member", metavar="NAME", help="a fleet pipeline: only this member (SPEC §13)")
    sub.add_parser("validate", parents=[common], help="parse and check the pipeline folder")
    p = sub.add_parser(
        "plan", parents=[common], help="what apply would do now, with risk and impact (no lock, no change)"
    )
    p.add_argument("--sql", action="store_true", help="also show the exact statements and payloads apply would send")
    sub.add_parser("status", parents=[common], help="each change's latest state, next action and risk")
    p = sub.add_parser("apply", parents=[common], help="apply pending changes under the lock")
    p.add_argument("--until", metavar="ID", help="stop after this change")
    _approve_option(p)
    p = sub.add_parser("history", parents=[common], help="audit entries, oldest first")
    p.add_argument("--change", metavar="ID", help="only this change")
    p = sub.add_parser("undo", parents=[common], help="roll back applied changes, newest first")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--to", metavar="ID", help="roll back every applied change after ID")
    group.add_argument("--last", metavar="N", type=int, help="roll back the last N applied changes")
    p.add_argument("--plan", action="store_true", help="only show the rollbacks undo would run (no lock, no change)")
    _approve_option(p)
    p = sub.add_parser("fix", parents=[common], help="resolve a blocked change")
    p.add_argument("change_id", metavar="ID")
    p.add_argument("--as", dest="as_", required=True, choices=list(FIX_STATES))
    p.add_argument("--accept-checksum", action="store_true", help="record the file's current checksum")
    p = sub.add_parser(
        "rehearse", parents=[common], help="apply, undo and apply again on scratch targets; report bad rollbacks"
    )
    p.add_argument(
        "--scratch",
        metavar="TARGET=CONN_ID",
        action="append",
        default=[],
        help="rehearse target TARGET on connection CONN_ID (repeat per target; default: rehearsal.scratch)",
    )
    p = sub.add_parser("unlock", parents=[common], help="release a stale lease")
    p.add_argument("--force", action="store_true", help="also release a live lease")
    return parser


def _approve_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--approve",
        metavar="NOTE",
        help="approve this run (approval.required); every audit entry records NOTE and the OS user",
    )


def _dispatch(args: argparse.Namespace) -> tuple[dict[str, Any], Callable[[dict[str, Any]], str]]:
    from flamingock_provider import commands

    d, m = args.pipeline_dir, args.member
    table: dict[str, Callable[[], tuple[dict[str, Any], Callable[[dict[str, Any]], str]]]] = {
        "validate": lambda: (commands.validate(d, member=m), render.render_validate),
        "plan": lambda: (commands.plan(d, sql=args.sql, member=m), render.render_plan),
        "status": lambda: (commands.status(d, member=m), render.render_status),
        "apply": lambda: (commands.apply(d, args.until, member=m, approve=args.approve), render.render_run),
        "history": lambda: (commands.history(d, args.change, member=m), render.render_history),
        "undo": lambda: (
            (commands.undo_plan(d, to=args.to, last=args.last, member=m), render.render_undo_plan)
            if args.plan
            else (commands.undo(d, to=args.to, last=args.last, member=m, approve=args.approve), render.render_run)
        ),
        "fix": lambda: (commands.fix(d, args.change_id, args.as_, args.accept_checksum, member=m), render.render_fix),
        "unlock": lambda: (commands.unlock(d, args.force, member=m), render.render_unlock),
        "rehearse": lambda: (commands.rehearse(d, scratch_mapping(args.scratch), member=m), render_rehearsal),
    }
    doc, human = table[args.command]()
    return doc, fleet_aware(human, FLEET_RENDERERS.get(args.command, human))


def exit_code_of(command: str, doc: dict[str, Any]) -> int:
    if command in ("validate", "rehearse"):
        return 0 if doc["ok"] else 1
    if command == "apply" and is_fleet(doc):
        return fleet_exit_code(doc)
    if command in ("apply", "undo") and "undo" not in doc:
        return 1 if doc.get("failed") else 4 if doc.get("blocked") else 0
    return 0


def _error_json(err: FlamingockError) -> dict[str, Any]:
    doc: dict[str, Any] = {"ok": False, "error": {"type": type(err).__name__, "message": str(err)}}
    if isinstance(err, PipelineValidationError):
        doc["errors"] = [{"file": i.file, "message": i.message} for i in err.issues]
    for name in ("unit_id", "state", "reason", "fix", "owner", "members"):
        if hasattr(err, name):
            doc["error"][name] = getattr(err, name)
    return doc


def _approval_required(args: argparse.Namespace, err: ApprovalRequiredError) -> int:
    """Print the plan the run needs approval for (exit 5); nothing was changed."""
    from flamingock_provider.cli.approval import approval_document, render_approval

    with contextlib.redirect_stdout(sys.stderr):
        doc = approval_document(args, err)
    print(json.dumps(doc, indent=2, default=str) if args.json else render_approval(doc))
    print(f"FAILED: {err}", file=sys.stderr)
    return err.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    out = sys.stdout
    try:
        # Airflow (imported lazily to resolve connections) logs to stdout: keep stdout for our document.
        with contextlib.redirect_stdout(sys.stderr):
            doc, human = _dispatch(args)
    except ApprovalRequiredError as err:
        return _approval_required(args, err)
    except FlamingockError as err:
        if args.traceback:
            traceback.print_exc()
        if args.json:
            print(json.dumps(_error_json(err), indent=2, default=str), file=out)
        print(f"FAILED: {err}", file=sys.stderr)
        return err.exit_code
    except Exception as err:
        if args.traceback:
            traceback.print_exc()
        print(
            f"FAILED: unexpected {type(err).__name__}: {err}; rerun with --traceback and report it",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(doc, indent=2, default=str) if args.json else human(doc), file=out)
    code = exit_code_of(args.command, doc)
    if code and not args.json:
        print("FAILED: see above", file=sys.stderr)
    return code
