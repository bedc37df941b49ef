"""What the approver reads (the plan as markdown) and how the view links a run waiting for an answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flamingock_provider.core.approval import Gated
from flamingock_provider.core.loader import load_pipeline
from flamingock_provider.core.model import ApprovalConfig, ApprovalRequired
from flamingock_provider.operators.approval_body import MAX_SHOWN_CHARS, approval_body, approval_subject
from flamingock_provider.plugins.approvals import AwaitingApproval
from flamingock_provider.plugins.overview import HistoryRow, PipelineOverview
from flamingock_provider.plugins.render import render_page
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree


def test_the_body_lists_every_unit_with_risk_impact_and_statements(tmp_path: Path) -> None:
    pipe = write_tree(
        tmp_path / "p",
        {
            "pipeline.yaml": WAREHOUSE_PIPELINE,
            "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)"),
            "0002_b.yaml": sql_unit("b", "DELETE FROM orders"),
        },
    )
    units = list(load_pipeline(pipe).units)
    details: dict[str, dict[str, Any]] = {
        "a": {"risk": "safe", "reasons": [], "impact": None, "rendered": ["CREATE TABLE a (x INT)"]},
        "b": {
            "risk": "destructive",
            "reasons": ["destructive: DELETE FROM orders: deletes every row"],
            "impact": "table orders: 12 rows",
            "rendered": [{"huge": "x" * (MAX_SHOWN_CHARS + 100)}],
        },
    }
    gated = [Gated("b", "destructive")]
    config = ApprovalConfig(ApprovalRequired.DESTRUCTIVE)
    body = approval_body("p", config, "apply", units, gated, details)
    assert "would apply 2 change(s); `approval.required: destructive` asks for yours on 1" in body
    assert "| `a` | main | safe | - | no |" in body
    assert "| `b` | main | destructive | table orders: 12 rows | **yes** |" in body
    assert "```sql\nCREATE TABLE a (x INT);\n```" in body
    assert "- destructive: DELETE FROM orders: deletes every row" in body
    assert "more characters)" in body and "x" * (MAX_SHOWN_CHARS + 100) not in body
    assert approval_subject("p", "undo", gated) == "Approve undo of pipeline p: 1 change(s) need approval (destructive)"


def test_the_view_links_a_waiting_run_and_shows_approver_and_bundle() -> None:
    waiting = AwaitingApproval("flamingock_p", "manual__2026-12-03T10:00:00+00:00", "approve", -1, "Approve apply", "x")
    assert (
        waiting.link
        == "../dags/flamingock_p/runs/manual__2026-12-03T10%3A00%3A00%2B00%3A00/tasks/approve/required_actions"
    )
    row = HistoryRow(
        "2026-12-03 10:00:01",
        "b",
        "APPLIED",
        "apply",
        "run",
        None,
        approved_by="admin",
        bundle_version="9f2c" + "0" * 36,
    )
    shown = PipelineOverview("p", "/p", "p", "flamingock_p", history=(row,), history_total=1)
    html = render_page([shown], root="/dags/changes", user="admin", awaiting={"flamingock_p": [waiting]})
    assert 'data-role="awaiting-approval"' in html and f'href="{waiting.link}"' in html
    assert "<td>admin</td>" in html and 'title="9f2c' in html and ">9f2c00000000</code>" in html
    assert 'data-role="awaiting-approval"' not in render_page([shown], root="/dags/changes", user="admin")
