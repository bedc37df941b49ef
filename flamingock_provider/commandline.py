"""How the ``flamingock`` command line spells things: the only module that knows its flags.

The core speaks in states (``MANUAL_MARKED_AS_APPLIED``) and structured resolutions; this module turns
them into the exact command a person types, for error messages, JSON documents and task logs.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from flamingock_provider.core.model import NextAction, State
from flamingock_provider.exceptions import BlockedError

if TYPE_CHECKING:
    from flamingock_provider.core.plan import Decision

# The states `flamingock fix --as` records, and how the flag spells them.
FIX_STATES: dict[str, State] = {
    "applied": State.MANUAL_MARKED_AS_APPLIED,
    "rolled-back": State.MANUAL_MARKED_AS_ROLLED_BACK,
}
_FIX_WORDS = {state: word for word, state in FIX_STATES.items()}


def fix_word(state: State) -> str:
    """Return the ``--as`` value that records ``state``."""
    return _FIX_WORDS[state]


def fix_command(
    pipeline_dir: str, unit_id: str, state: State | str, accept_checksum: bool = False, member: str | None = None
) -> str:
    """Return the exact ``flamingock fix`` command line that records ``state`` for ``unit_id``.

    ``state`` is a fix state, or its ``--as`` spelling (``applied`` / ``rolled-back``); ``member``
    scopes it to one fleet member (SPEC §13).
    """
    word = state if isinstance(state, str) and state in FIX_STATES else fix_word(State(state))
    cmd = ["flamingock", "fix", pipeline_dir, unit_id, "--as", word]
    if accept_checksum:
        cmd.append("--accept-checksum")
    return shlex.join(cmd + member_flag(member))


def member_flag(member: str | None) -> list[str]:
    """``--member NAME`` for a fleet member's command line, nothing otherwise."""
    return [] if member is None else ["--member", member]


def unlock_command(pipeline_dir: str, force: bool = False, member: str | None = None) -> str:
    """Return the ``flamingock unlock`` command line for a pipeline folder (or one fleet member)."""
    return shlex.join(["flamingock", "unlock", pipeline_dir, *(["--force"] if force else []), *member_flag(member)])


def blocked_report(pipeline_dir: str, decision: Decision, member: str | None = None) -> dict[str, Any]:
    """Return SPEC §11's ``blocked`` object for a blocked decision: id, state, reason and the fix command."""
    resolution = decision.resolution
    reason = decision.reason
    fix = None
    if resolution is not None:
        fix = fix_command(pipeline_dir, decision.unit.id, resolution.state, resolution.accept_checksum, member)
        if resolution.alternative is not None:
            other = fix_command(pipeline_dir, decision.unit.id, resolution.alternative, member=member)
            reason = f"{reason}; if it is fully in place run `{other}`, otherwise mark it {fix_word(resolution.state)}"
    return {
        "id": decision.unit.id,
        "state": decision.state.value if decision.state else None,
        "reason": reason,
        "fix": fix,
    }


def blocked_error(pipeline_dir: str, decision: Decision, member: str | None = None) -> BlockedError:
    """Return the error that stops a stage at a blocked unit, naming the exact fix command."""
    report = blocked_report(pipeline_dir, decision, member)
    return BlockedError(report["id"], report["state"], report["reason"], report["fix"] or "")


def decision_json(pipeline_dir: str, decision: Decision, member: str | None = None) -> dict[str, Any]:
    """Return one change of SPEC §11's ``plan``/``status`` document."""
    blocked = blocked_report(pipeline_dir, decision, member) if decision.action is NextAction.BLOCKED else None
    return {
        "id": decision.unit.id,
        "stage": decision.unit.stage,
        "state": decision.state.value if decision.state else None,
        "action": decision.action.value,
        "reason": (blocked["reason"] if blocked else decision.reason) or None,
        "fix": blocked["fix"] if blocked else None,
    }
