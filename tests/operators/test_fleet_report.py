"""The fleet report's words (SPEC §13: the run fails naming the members that failed)."""

from __future__ import annotations

from flamingock_provider.operators.fleet import report_message


def test_the_report_names_failed_blocked_and_unstarted_members_and_where_the_fix_is() -> None:
    text = report_message("apply", {"acme": ["main.apply_a", "main.rollback"]}, {"globex": ["b"]}, ["initech"])
    assert text.startswith("fleet apply: failed: acme (main.apply_a, main.rollback); blocked: globex (change b)")
    assert "--member NAME" in text and "flamingock fix" in text
    assert "not run (an earlier wave failed, or its tasks did not finish): initech" in text
    assert report_message("undo", {}, {}, ["x", "y"]) == (
        "fleet undo: not run (an earlier wave failed, or its tasks did not finish): x, y; see each member's task logs"
    )
