"""``apply``/``undo`` of a pipeline that requires approval: exit 5 with the plan, or ``--approve NOTE`` (SPEC §11, §14)."""

from __future__ import annotations

import getpass
import json
import sqlite3
from pathlib import Path

import pytest

from flamingock_provider import commands
from flamingock_provider.cli.main import main
from flamingock_provider.exceptions import ApprovalRequiredError
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree


def pipeline(tmp_path: Path, required: str) -> Path:
    return write_tree(
        tmp_path / "gated",
        {
            "pipeline.yaml": WAREHOUSE_PIPELINE + f"approval: {{required: {required}}}\n",
            "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
            "0002_b.yaml": sql_unit("b", "DROP TABLE a", "CREATE TABLE a (x INT)"),
        },
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_destructive_apply_exits_5_with_the_plan_then_runs_approved(
    tmp_path: Path, sqlite_target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = pipeline(tmp_path, "destructive")
    code, doc = cli(capsys, "apply", str(pipe), "--until", "a")  # only a safe unit: no approval needed
    assert code == 0 and doc["applied"] == ["a"]

    code, doc = cli(capsys, "apply", str(pipe))
    assert code == 5 and doc["approval_required"] is True
    assert doc["approval"]["units"] == [{"id": "b", "risk": "destructive"}]
    assert [(c["id"], c["action"], c["risk"]) for c in doc["changes"]] == [
        ("a", "skip", "safe"),
        ("b", "apply", "destructive"),
    ]
    assert doc["changes"][1]["rendered"] == ["DROP TABLE a"]
    assert doc["approval"]["approve"].endswith('--approve "NOTE"')
    assert "a" in tables(sqlite_target)  # nothing ran
    assert [e["change_id"] for e in commands.history(pipe)["entries"]] == ["a", "a"]
    assert commands.status(pipe)["lock"] is None  # the refused run released its lease

    code, doc = cli(capsys, "apply", str(pipe), "--approve", "CHG-42: drop the old table")
    assert code == 0 and doc["applied"] == ["b"] and "a" not in tables(sqlite_target)
    entries = commands.history(pipe)["entries"]
    assert [(e["change_id"], e["approved_by"], e["approval_note"]) for e in entries] == [
        ("a", None, None),
        ("a", None, None),
        ("b", getpass.getuser(), "CHG-42: drop the old table"),
        ("b", getpass.getuser(), "CHG-42: drop the old table"),
    ]
    assert all(e["bundle_version"] is None for e in entries)  # outside Airflow there is no bundle


def test_an_undo_of_a_destructive_unit_needs_approval_too(
    tmp_path: Path, sqlite_target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = pipeline(tmp_path, "destructive")
    commands.apply(pipe, approve="set up")
    code, doc = cli(capsys, "undo", str(pipe), "--to", "a")
    assert code == 5 and [u["id"] for u in doc["undo"]] == ["b"]
    assert doc["approval"] == {
        "required": "destructive",
        "action": "undo",
        "units": [{"id": "b", "risk": "destructive"}],
        "approve": f'flamingock undo {pipe} --to a --approve "NOTE"',
    }
    assert commands.history(pipe, "b")["entries"][-1]["state"] == "APPLIED"

    code, doc = cli(capsys, "undo", str(pipe), "--to", "a", "--approve", "restore")
    assert code == 0 and doc["rolled_back"] == ["b"] and "a" in tables(sqlite_target)
    last = commands.history(pipe, "b")["entries"][-1]
    assert (last["state"], last["action"], last["approval_note"]) == ("ROLLED_BACK", "undo", "restore")


def test_always_gates_a_safe_unit_and_the_human_output_says_how_to_approve(
    tmp_path: Path, sqlite_target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = pipeline(tmp_path, "always")
    assert main(["apply", str(pipe), "--until", "a"]) == 5
    out = capsys.readouterr()
    assert "APPROVAL REQUIRED (approval.required: always): a (safe)" in out.out
    assert "CREATE TABLE a (x INT);" in out.out and "FAILED: pipeline 'gated' needs approval" in out.err
    with pytest.raises(ApprovalRequiredError) as info:
        commands.apply(pipe)  # the Python API raises the same error
    assert info.value.units == [("a", "safe"), ("b", "destructive")]
    assert commands.history(pipe)["entries"] == []


def test_never_asks_nothing(tmp_path: Path, sqlite_target: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipe = pipeline(tmp_path, "never")
    code, doc = cli(capsys, "apply", str(pipe))
    assert code == 0 and doc["applied"] == ["a", "b"]
