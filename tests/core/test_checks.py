"""Preconditions (SPEC §14) on a real SQLite target: every on_check_fail outcome, its audit, time bounds."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree

SEED = sql_unit("seed", "CREATE TABLE legacy (id INT, name TEXT); INSERT INTO legacy VALUES (1, 'a'), (2, NULL)")
DROP_NAME_APPLY = "ALTER TABLE legacy DROP COLUMN name"


def checked_unit(on_check_fail: str | None, expect: int, extra_checks: str = "") -> str:
    lines = [
        sql_unit("drop-name", DROP_NAME_APPLY, "ALTER TABLE legacy ADD COLUMN name TEXT").rstrip(),
        "checks:",
        '  - sql: "SELECT count(*) FROM legacy WHERE name IS NULL"',
        f"    expect: {expect}",
        extra_checks,
    ]
    if on_check_fail:
        lines.append(f"on_check_fail: {on_check_fail}")
    return "\n".join(line for line in lines if line) + "\n"


def pipeline(tmp_path: Path, unit_text: str, *more: tuple[str, str]) -> Path:
    files = {"pipeline.yaml": WAREHOUSE_PIPELINE, "0001_seed.yaml": SEED, "0002_drop.yaml": unit_text}
    files.update(dict(more))
    return write_tree(tmp_path / "p", files)


def entries(pipe: Path, change: str) -> list[dict[str, Any]]:
    return [e for e in commands.history(pipe)["entries"] if e["change_id"] == change]


def columns(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(legacy)")]


def test_passing_checks_run_the_unit_and_its_entries_carry_what_they_saw(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = pipeline(tmp_path, checked_unit(None, 1))
    result = commands.apply(pipe)
    assert result["applied"] == ["seed", "drop-name"] and result["checks"] == {"drop-name": "passed"}
    started, applied = entries(pipe, "drop-name")
    assert (started["state"], applied["state"]) == ("STARTED", "APPLIED")
    assert applied["check_outcome"]["outcome"] == "passed"
    assert applied["check_outcome"]["checks"] == [{"check": "checks[0] sql", "saw": 1, "passed": True}]
    assert applied["risk"] == "destructive" and columns(sqlite_target) == ["id"]


def test_halt_records_check_failed_and_fails_the_run_before_the_unit(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = pipeline(tmp_path, checked_unit("halt", 0))
    result = commands.apply(pipe)
    assert result["applied"] == ["seed"] and result["failed"]["id"] == "drop-name"
    assert "saw 1, expected 0" in result["failed"]["error"] and result["checks"] == {"drop-name": "halt"}
    (entry,) = entries(pipe, "drop-name")
    assert entry["state"] == "CHECK_FAILED"
    assert entry["check_outcome"] | {"message": ""} == {
        "outcome": "halt",
        "message": "",
        "check": "checks[0] sql",
        "saw": 1,
        "expected": "0",
        "checks": [{"check": "checks[0] sql", "saw": 1, "passed": False}],
    }
    assert columns(sqlite_target) == ["id", "name"]  # nothing ran
    # CHECK_FAILED is applied again next run, and the checks run again: still no
    assert [c["action"] for c in commands.plan(pipe)["changes"]] == ["skip", "apply"]
    assert commands.apply(pipe)["failed"]["id"] == "drop-name"
    assert [e["state"] for e in entries(pipe, "drop-name")] == ["CHECK_FAILED", "CHECK_FAILED"]


def test_halt_exits_1_through_the_cli(tmp_path: Path, sqlite_target: Path) -> None:
    from flamingock_provider.cli.main import main

    pipe = pipeline(tmp_path, checked_unit(None, 0))  # halt is the default
    assert main(["apply", str(pipe)]) == 1


def test_skip_records_check_failed_and_the_run_goes_on(tmp_path: Path, sqlite_target: Path) -> None:
    after = ("0003_after.yaml", sql_unit("after", "CREATE TABLE after_it (x INT)"))
    pipe = pipeline(tmp_path, checked_unit("skip", 0), after)
    result = commands.apply(pipe)
    assert result["applied"] == ["seed", "after"] and result["skipped"] == ["drop-name"] and result["failed"] is None
    (entry,) = entries(pipe, "drop-name")
    assert entry["state"] == "CHECK_FAILED" and entry["check_outcome"]["outcome"] == "skip"
    assert columns(sqlite_target) == ["id", "name"]
    # once the data is fixed the checks pass and the unit runs
    with sqlite3.connect(sqlite_target) as conn:
        conn.execute("UPDATE legacy SET name = 'b' WHERE name IS NULL")
    again = commands.apply(pipe)
    assert again["applied"] == ["drop-name"] and again["checks"] == {"drop-name": "passed"}
    assert columns(sqlite_target) == ["id"]


def test_mark_applied_records_applied_and_executes_nothing(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = pipeline(tmp_path, checked_unit("mark_applied", 0))
    result = commands.apply(pipe)
    assert result["skipped"] == ["drop-name"] and result["checks"] == {"drop-name": "mark_applied"}
    (entry,) = entries(pipe, "drop-name")
    assert entry["state"] == "APPLIED" and entry["check_outcome"]["outcome"] == "mark_applied"
    assert columns(sqlite_target) == ["id", "name"]
    assert commands.plan(pipe)["changes"][1]["action"] == "skip"


def test_warn_runs_the_unit_and_its_entries_carry_the_warning(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = pipeline(tmp_path, checked_unit("warn", 0))
    result = commands.apply(pipe)
    assert result["applied"] == ["seed", "drop-name"] and result["checks"] == {"drop-name": "warn"}
    started, applied = entries(pipe, "drop-name")
    for entry in (started, applied):
        assert entry["check_outcome"]["outcome"] == "warn" and "saw 1, expected 0" in entry["check_outcome"]["message"]
    assert columns(sqlite_target) == ["id"]


def test_second_check_runs_only_when_the_first_passes(tmp_path: Path, sqlite_target: Path) -> None:
    more = '  - sql: "SELECT 1 FROM legacy WHERE id = 99"\n    expect_rows: some'
    pipe = pipeline(tmp_path, checked_unit("skip", 1, more))
    commands.apply(pipe)
    (entry,) = entries(pipe, "drop-name")
    outcome = entry["check_outcome"]
    assert outcome["check"] == "checks[1] sql" and outcome["saw"] == "no rows" and outcome["expected"] == "some rows"
    assert [c["passed"] for c in outcome["checks"]] == [True, False]


HANG = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"


def test_a_hanging_sql_check_is_cut_off_with_a_clear_error(tmp_path: Path, sqlite_target: Path) -> None:
    unit = "\n".join(
        [
            sql_unit("drop-name", DROP_NAME_APPLY).rstrip(),
            "checks:",
            f'  - sql: "{HANG}"',
            "    expect: 0",
            "    timeout_seconds: 0.5",
            "on_check_fail: mark_applied",  # a check that cannot answer never marks a unit applied
        ]
    )
    pipe = pipeline(tmp_path, unit + "\n")
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "drop-name" and result["checks"] == {"drop-name": "error"}
    assert "could not be evaluated" in result["failed"]["error"] and "0.5 s" in result["failed"]["error"]
    (entry,) = entries(pipe, "drop-name")
    assert entry["state"] == "CHECK_FAILED" and entry["check_outcome"]["outcome"] == "error"
    assert columns(sqlite_target) == ["id", "name"]


PY_UNIT = """\
import time

ID = "py-check"
AUTHOR = "tester"
TARGET = "warehouse"
ON_CHECK_FAIL = "{mode}"


def check(ctx):
{body}


def apply(ctx):
    ctx.target.execute("CREATE TABLE py_ran (x INT)")


def rollback(ctx):
    ctx.target.execute("DROP TABLE py_ran")
"""


def _py(mode: str, body: str) -> tuple[str, str]:
    return ("0003_py.py", PY_UNIT.format(mode=mode, body=body))


def test_python_check_string_says_why_not(tmp_path: Path, sqlite_target: Path) -> None:
    check = (
        '    n = ctx.target.execute("SELECT count(*) FROM legacy").fetchone()[0]\n    return f"{n} rows still there"'
    )
    pipe = pipeline(tmp_path, checked_unit(None, 1), _py("skip", check))
    result = commands.apply(pipe)
    assert result["skipped"] == ["py-check"] and result["checks"]["py-check"] == "skip"
    (entry,) = entries(pipe, "py-check")
    assert entry["state"] == "CHECK_FAILED" and entry["check_outcome"]["saw"] == "2 rows still there"


def test_python_check_true_runs_the_unit(tmp_path: Path, sqlite_target: Path) -> None:
    pipe = pipeline(tmp_path, checked_unit(None, 1), _py("halt", "    return True"))
    assert commands.apply(pipe)["applied"] == ["seed", "drop-name", "py-check"]


def test_a_hanging_python_check_is_cut_off(
    tmp_path: Path, sqlite_target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flamingock_provider.core import executor

    monkeypatch.setattr(executor, "DEFAULT_CHECK_TIMEOUT_S", 0.3)
    pipe = pipeline(tmp_path, checked_unit(None, 1), _py("skip", "    time.sleep(30)\n    return True"))
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "py-check" and "did not answer within 0.3 s" in result["failed"]["error"]


@pytest.mark.parametrize(
    ("checks", "message"),
    [
        (
            "  - sqll: 'SELECT 1'\n    expect: 0",
            "give exactly one check kind of sql, mongo, dynamodb, s3, http (got none) (did you mean 'sql'?)",
        ),
        ("  - sql: 'SELECT 1'", "field 'checks[0]': give exactly one of 'expect'"),
        (
            "  - sql: 'SELECT 1'\n    expect_rows: sum",
            "field 'checks[0].expect_rows': unknown value 'sum' (expected one of: none, some)",
        ),
        (
            "  - mongo: {collection: u, expect_cont: 0}",
            "field 'checks[0].mongo.expect_cont': unknown key (did you mean 'expect_count'?)",
        ),
        (
            "  - mongo: {collection: u, expect_count: -1}",
            "field 'checks[0].mongo.expect_count': must be a whole number >= 0",
        ),
        (
            "  - s3: {bucket: b, expect: empyt}",
            "field 'checks[0].s3.expect': unknown value 'empyt' (did you mean 'empty'?)",
        ),
        ("  - dynamodb: {table: t, key: x, expect: absent}", "field 'checks[0].dynamodb.key': must be a mapping"),
        ("  - http: {endpoint: /h, expect_status: [999]}", "field 'checks[0].http.expect_status'"),
        (
            "  - sql: 'SELECT 1'\n    expect: 0\n    target: warehous",
            "field 'checks[0].target': unknown target 'warehous' (did you mean 'warehouse'?)",
        ),
        (
            "  - sql: 'SELECT 1'\n    expect: 0\n    timeout_seconds: 0",
            "field 'checks[0].timeout_seconds': must be a positive number",
        ),
        (
            "  - sql: 'SELECT 1'\n    expect: 0\n    expcet: 1",
            "field 'checks[0].expcet': unknown key (did you mean 'expect'?)",
        ),
    ],
)
def test_bad_check_definitions_are_validation_errors_naming_file_and_field(
    tmp_path: Path, sqlite_target: Path, checks: str, message: str
) -> None:
    unit = sql_unit("drop-name", DROP_NAME_APPLY) + "checks:\n" + checks + "\n"
    doc = commands.validate(pipeline(tmp_path, unit))
    assert doc["ok"] is False
    assert {e["file"] for e in doc["errors"]} == {"0002_drop.yaml"}
    assert message in doc["errors"][0]["message"], doc["errors"]


def test_unit_keys_are_checked_with_did_you_mean(tmp_path: Path, sqlite_target: Path) -> None:
    unit = sql_unit("drop-name", DROP_NAME_APPLY) + "on_check_fail: skp\nrisk: destructiv\n"
    doc = commands.validate(pipeline(tmp_path, unit))
    messages = [e["message"] for e in doc["errors"]]
    assert any("field 'on_check_fail': unknown value 'skp' (did you mean 'skip'?)" in m for m in messages)
    assert any("field 'risk': unknown level 'destructiv' (did you mean 'destructive'?)" in m for m in messages)
    typo = sql_unit("drop-name", DROP_NAME_APPLY) + "chekcs: []\n"
    assert "did you mean 'checks'?" in commands.validate(pipeline(tmp_path, typo))["errors"][0]["message"]


def test_python_unit_settings_are_checked(tmp_path: Path, sqlite_target: Path) -> None:
    source = PY_UNIT.format(mode="skip", body="    return True")
    typo = source.replace('ON_CHECK_FAIL = "skip"', 'ON_CHECK_FAILS = "skip"\nRSIK = "safe"')
    doc = commands.validate(pipeline(tmp_path, checked_unit(None, 1), ("0003_py.py", typo)))
    messages = [w["message"] for w in doc["warnings"] if w["file"] == "0003_py.py"]
    assert any("'ON_CHECK_FAILS' (line 6): not a unit setting (did you mean 'ON_CHECK_FAIL'?)" in m for m in messages)
    assert any("'RSIK' (line 7): not a unit setting (did you mean 'RISK'?)" in m for m in messages)
    bad = source.replace('ON_CHECK_FAIL = "skip"', 'ON_CHECK_FAIL = "skipp"\nRISK = "harmless"')
    errors = [
        e["message"]
        for e in commands.validate(pipeline(tmp_path, checked_unit(None, 1), ("0003_py.py", bad)))["errors"]
    ]
    assert any("field 'ON_CHECK_FAIL': unknown value 'skipp' (did you mean 'skip'?)" in m for m in errors)
    assert any("field 'RISK': unknown level 'harmless'" in m for m in errors)
    two_args = source.replace("def check(ctx):", "def check(ctx, extra):")
    errors = [
        e["message"]
        for e in commands.validate(pipeline(tmp_path, checked_unit(None, 1), ("0003_py.py", two_args)))["errors"]
    ]
    assert any("'def check' (line 9): must take one argument, 'def check(ctx)'" in m for m in errors)
