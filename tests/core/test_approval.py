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
