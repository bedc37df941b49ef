"""Approvals (SPEC §14): the config is validated at parse time, and the rule lives once in core/approval.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider.core.approval import gated_units, level_needs_approval
from flamingock_provider.core.loader import load_pipeline
from flamingock_provider.core.model import ApprovalConfig, ApprovalRequired
from flamingock_provider.exceptions import ApprovalRequiredError, PipelineValidationError
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree

LEVELS = ("safe", "rewrite", "locking", "unknown", "destructive", None)


@pytest.mark.parametrize(
    ("required", "gated"),
    [
        ("never", set()),
        ("destructive", {"unknown", "destructive", None}),
        ("always", set(LEVELS)),
    ],
)
def test_which_risk_levels_need_approval(required: str, gated: set[str | None]) -> None:
    config = ApprovalConfig(ApprovalRequired(required))
    assert {level for level in LEVELS if level_needs_approval(config, level)} == gated


def test_gated_units_name_each_unit_with_its_risk_and_a_missing_level_is_unknown(tmp_path: Path) -> None:
    pipe = write_tree(
        tmp_path / "p",
        {
            "pipeline.yaml": WAREHOUSE_PIPELINE,
            "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)"),
            "0002_b.yaml": sql_unit("b", "DROP TABLE a"),
            "0003_c.yaml": sql_unit("c", "CREATE TABLE c (x INT)"),
        },
    )
    units = load_pipeline(pipe).units
    risks = {"a": "safe", "b": "destructive", "c": None}
    config = ApprovalConfig(ApprovalRequired.DESTRUCTIVE)
    gated = gated_units(config, units, lambda u: risks[u.id])
    assert [(g.unit_id, g.risk) for g in gated] == [("b", "destructive"), ("c", "unknown")]
    assert gated_units(ApprovalConfig(), units, lambda u: "destructive") == []


def test_approval_config_is_parsed_with_fractional_hours(tmp_path: Path) -> None:
    pipe = write_tree(
        tmp_path / "p",
        {
            "pipeline.yaml": WAREHOUSE_PIPELINE + "approval: {required: always, timeout_hours: 0.25}\n",
            "0001_a.yaml": sql_unit("a", "SELECT 1"),
        },
    )
    assert load_pipeline(pipe).approval == ApprovalConfig(ApprovalRequired.ALWAYS, 0.25)
    (pipe / "pipeline.yaml").write_text(WAREHOUSE_PIPELINE)
    assert load_pipeline(pipe).approval == ApprovalConfig(ApprovalRequired.NEVER, 24)


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        ("approval: {required: sometimes}", "field 'approval.required': unknown value 'sometimes'; allowed: never | "),
        ("approval: {timeout_hours: 0}", "field 'approval.timeout_hours': must be a positive number of hours"),
        ("approval: {timeout_hours: soon}", "field 'approval.timeout_hours': must be a positive number of hours"),
        ("approval: {require: always}", "field 'approval.require': unknown key (did you mean 'required'?)"),
        ("approval: always", "field 'approval': must be a mapping"),
    ],
)
def test_a_bad_approval_config_names_file_field_and_value(tmp_path: Path, yaml: str, expected: str) -> None:
    pipe = write_tree(
        tmp_path / "p", {"pipeline.yaml": WAREHOUSE_PIPELINE + yaml + "\n", "0001_a.yaml": sql_unit("a", "SELECT 1")}
    )
    with pytest.raises(PipelineValidationError) as info:
        load_pipeline(pipe)
    issues = [(i.file, i.message) for i in info.value.issues]
    assert any(file == "pipeline.yaml" and expected in message for file, message in issues), issues


def test_the_error_names_the_units_and_exits_5() -> None:
    err = ApprovalRequiredError("p", "destructive", "undo", [("b", "destructive")])
    assert err.exit_code == 5
    assert "to undo b (destructive); nothing was undone" in str(err)


def test_an_entry_written_before_these_fields_existed_reads_them_as_none() -> None:
    from datetime import datetime, timezone

    from flamingock_provider.core.model import Action, AuditEntry, State

    old = AuditEntry("p", "main", "a", "t", State.APPLIED, Action.APPLY, datetime.now(timezone.utc), "e").to_dict()
    for key in ("approved_by", "approval_note", "bundle_version"):
        del old[key]
    again = AuditEntry.from_dict(old)
    assert (again.approved_by, again.approval_note, again.bundle_version) == (None, None, None)


def test_a_unit_task_refuses_under_the_lease_without_an_approval_even_when_the_hint_said_none_was_needed(
    tmp_path: Path, sqlite_target: Path
) -> None:
    from flamingock_provider.core.approval import Approval
    from flamingock_provider.core.workspace import holding, new_run, open_workspace

    pipe = write_tree(
        tmp_path / "p",
        {
            "pipeline.yaml": WAREHOUSE_PIPELINE + "approval: {required: destructive}\n",
            "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)"),
            "0002_b.yaml": sql_unit("b", "DROP TABLE a"),
        },
    )
    with open_workspace(pipe) as ws, holding(ws) as lease:
        stage = ws.pipeline.stages[0]
        engine = ws.engine(lease=lease, run=new_run(lease.owner))
        with pytest.raises(ApprovalRequiredError) as info:
            engine.run_stage(stage, units=stage.units[1:], compensate=False)  # what the task of b runs
        assert info.value.units == [("b", "destructive")]
        assert ws.store.history(ws.pipeline.id) == []  # refused before anything was written
        done = engine.run_stage(stage, units=stage.units[:1], compensate=False)  # a is safe: no approval needed
        assert done.done == ["a"]
        approved = ws.engine(lease=lease, run=new_run(lease.owner, approval=Approval("bob", "ok")))
        assert approved.run_stage(stage, units=stage.units[1:], compensate=False).done == ["b"]
        entries = [(e.change_id, e.state.value, e.approved_by) for e in ws.store.history(ws.pipeline.id)]
    assert entries == [("a", "STARTED", None), ("a", "APPLIED", None), ("b", "STARTED", "bob"), ("b", "APPLIED", "bob")]
