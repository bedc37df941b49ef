"""``--member`` on every command of a fleet (SPEC §11, §13), on real SQLite files through the CLI.

Each command scoped to a member returns its usual document plus ``member``; one that names no member
exits 1 listing them; ``validate`` reads the member's own connection types; ``rehearse`` rehearses what
is pending in the member's own trail and refuses a scratch connection that is any member's real one.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from flamingock_provider.cli.main import main
from flamingock_provider.exceptions import UnknownMemberError, UsageError
from tests.cli.test_fleet import sqlite_member as member
from tests.conftest import write_tree

UNITS = {
    "01_schema/0001_accounts.yaml": (
        "id: accounts\nauthor: t\ntemplate: sql\ntransactional: false\n"
        "apply: {statements: 'CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)'}\n"
        "rollback: {statements: 'DROP TABLE accounts'}\n"
    ),
    "01_schema/0002_by_name.yaml": (
        "id: by-name\nauthor: t\ntemplate: sql\n"
        "apply: {statements: 'CREATE INDEX accounts_by_name ON accounts (name)'}\n"
        "rollback: {statements: 'DROP INDEX accounts_by_name'}\n"
    ),
}
NAMES = ("acme", "globex", "initech")


def fleet(tmp_path: Path, members: list[dict[str, Any]] | None, extra: str = "", waves: str = "[rest]") -> Path:
    source = f"  members: {json.dumps(members)}\n" if members is not None else "  members_from: {variable: tenants}\n"
    yaml = (
        "targets:\n  app: {conn_id: acme_db}\ndefault_target: app\n"
        "lock: {poke_interval_seconds: 0.05, wait_timeout_seconds: 5}\n"
        f"{extra}fleet:\n{source}  max_parallel: 2\n  waves: {waves}\n"
    )
    return write_tree(tmp_path / "tenants", {"pipeline.yaml": yaml, **UNITS})


@pytest.fixture
def tenants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return fleet(tmp_path, [member(tmp_path, monkeypatch, n) for n in NAMES])


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def tables(tmp_path: Path, name: str) -> list[str]:
    db = tmp_path / f"{name}.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'flamingock%'"))


def test_validate_reads_the_members_own_connection_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # globex's database is PostgreSQL: known from its AIRFLOW_CONN_ variable alone, never connected to.
    members = [member(tmp_path, monkeypatch, "acme"), {"name": "globex", "targets": {"app": "globex_pg"}}]
    monkeypatch.setenv("AIRFLOW_CONN_GLOBEX_PG", "postgres://u:p@127.0.0.1:9/globex")
    pipe = fleet(tmp_path, members)

    def risk(doc: dict[str, Any]) -> str:
        return next(r["risk"] for r in doc["risks"] if r["id"] == "by-name")

    code, pg = cli(capsys, "validate", str(pipe), "--member", "globex")
    assert code == 0 and pg["ok"] and pg["member"] == "globex"
    assert risk(pg) == "locking"  # CREATE INDEX without CONCURRENTLY on PostgreSQL
    code, lite = cli(capsys, "validate", str(pipe), "--member", "acme")
    assert code == 0 and lite["member"] == "acme" and risk(lite) == "safe"  # on SQLite nothing is locking
    assert "member" not in commands.validate(pipe)

    assert main(["validate", str(pipe), "--member", "nobody"]) == 1
    assert "no such member in the fleet; the members are: acme, globex" in capsys.readouterr().err
    with pytest.raises(UsageError, match="has no 'fleet:'"):
        commands.validate(write_tree(tmp_path / "plain", {"pipeline.yaml": "targets:\n  app: {conn_id: acme_db}\n"}),
                          member="acme")  # fmt: skip


def test_every_command_scoped_to_a_member_adds_member_and_touches_no_other(
    tenants: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tenants)
    code, plan = cli(capsys, "plan", d, "--member", "globex")
    assert code == 0 and plan["member"] == "globex" and [c["action"] for c in plan["changes"]] == ["apply", "apply"]
    code, applied = cli(capsys, "apply", d, "--member", "globex")
    assert code == 0 and applied["member"] == "globex" and applied["applied"] == ["accounts", "by-name"]
    assert tables(tmp_path, "globex") == ["accounts", "accounts_by_name"] and tables(tmp_path, "initech") == []
    code, status = cli(capsys, "status", d, "--member", "globex")
    assert code == 0 and status["member"] == "globex" and {c["state"] for c in status["changes"]} == {"APPLIED"}
    code, history = cli(capsys, "history", d, "--member", "globex", "--change", "accounts")
    assert code == 0 and history["member"] == "globex"
    assert [(e["state"], e["member"]) for e in history["entries"]] == [("STARTED", "globex"), ("APPLIED", "globex")]
    code, preview = cli(capsys, "undo", d, "--member", "globex", "--last", "1", "--plan")
    assert code == 0 and preview["member"] == "globex" and [u["id"] for u in preview["undo"]] == ["by-name"]
    code, undone = cli(capsys, "undo", d, "--member", "globex", "--last", "1")
    assert code == 0 and undone["member"] == "globex" and undone["rolled_back"] == ["by-name"]
    assert tables(tmp_path, "globex") == ["accounts"]
    code, unlocked = cli(capsys, "unlock", d, "--member", "globex")
    assert code == 0 and unlocked["member"] == "globex" and unlocked["released"] is False

    # initech's CREATE TABLE fails on a view of that name, and so does its rollback: blocked (exit 4 next time)
    with sqlite3.connect(tmp_path / "initech.db") as conn:
        conn.execute("CREATE VIEW accounts AS SELECT 1 AS id")
    code, failed = cli(capsys, "apply", d, "--member", "initech")
    assert code == 1 and failed["member"] == "initech" and failed["failed"]["id"] == "accounts"
    code, blocked = cli(capsys, "apply", d, "--member", "initech")
    assert code == 4 and blocked["member"] == "initech"
    assert blocked["blocked"]["fix"] == f"flamingock fix {d} accounts --as rolled-back --member initech"
    code, fixed = cli(capsys, "fix", d, "accounts", "--as", "rolled-back", "--member", "initech")
    assert code == 0 and fixed["member"] == "initech" and fixed["entry"]["member"] == "initech"
    assert tables(tmp_path, "acme") == []  # never touched by any of it

    for argv in (["history", d], ["undo", d, "--last", "1"], ["fix", d, "accounts", "--as", "applied"], ["unlock", d]):
        code, err = cli(capsys, *argv)
        assert (
            code == 2 and "is a fleet: give --member NAME (members: acme, globex, initech)" in err["error"]["message"]
        )
    for argv in (["status", d], ["plan", d], ["apply", d], ["fix", d, "accounts", "--as", "applied"], ["validate", d]):
        code, err = cli(capsys, *argv, "--member", "nobody")
        assert code == 1 and err["error"]["members"] == list(NAMES), argv


def test_a_fleet_from_a_variable_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_TENANTS", json.dumps([member(tmp_path, monkeypatch, n) for n in NAMES[:2]]))
    pipe = fleet(tmp_path, None)
    code, doc = cli(capsys, "apply", str(pipe))
    assert code == 0 and [r["member"] for r in doc["members"]] == ["acme", "globex"]
    code, one = cli(capsys, "validate", str(pipe), "--member", "globex")
    assert code == 0 and one["member"] == "globex"
    code, err = cli(capsys, "status", str(pipe), "--member", "initech")
    assert code == 1 and err["error"]["members"] == ["acme", "globex"]

    monkeypatch.setenv("AIRFLOW_VAR_TENANTS", json.dumps([member(tmp_path, monkeypatch, n) for n in NAMES]))
    code, status = cli(capsys, "status", str(pipe))
    pending = {r["member"]: [c["action"] for c in r["changes"]] for r in status["members"]}
    assert code == 0 and pending == {
        "acme": ["skip", "skip"],
        "globex": ["skip", "skip"],
        "initech": ["apply", "apply"],
    }


def test_rehearse_runs_what_is_pending_for_that_member_on_scratch_only(
    tenants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SCRATCH_DB", f"sqlite:///{tmp_path / 'scratch.db'}")
    d = str(tenants)
    commands.apply(tenants, member="acme", until="accounts")
    shutil.copy(tmp_path / "acme.db", tmp_path / "scratch.db")  # the scratch copy of acme's database

    code, acme = cli(capsys, "rehearse", d, "--member", "acme", "--scratch", "app=scratch_db")
    assert code == 0 and acme["ok"] and acme["member"] == "acme"
    assert acme["rehearsed"] == ["by-name"]  # accounts is done in acme's own trail
    (tmp_path / "scratch.db").unlink()  # globex's database is empty: so is its scratch copy
    code, globex = cli(capsys, "rehearse", d, "--member", "globex", "--scratch", "app=scratch_db")
    assert code == 0 and globex["ok"] and globex["rehearsed"] == ["accounts", "by-name"]
    assert tables(tmp_path, "globex") == [] and tables(tmp_path, "acme") == ["accounts"]  # real ones untouched

    # The scratch connection is initech's real database: refused whichever member is rehearsed.
    code, err = cli(capsys, "rehearse", d, "--member", "globex", "--scratch", "app=initech_db")
    assert code == 1 and "target 'app' of member 'initech'" in err["error"]["message"]
    code, err = cli(capsys, "rehearse", d, "--scratch", "app=scratch_db")
    assert code == 2 and "give --member NAME (members: acme, globex, initech)" in err["error"]["message"]
    with pytest.raises(UnknownMemberError):
        commands.rehearse(tenants, {"app": "scratch_db"}, member="nobody")
    assert tables(tmp_path, "initech") == []


def test_approval_names_the_member_and_a_whole_fleet_shows_its_matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = fleet(tmp_path, [member(tmp_path, monkeypatch, n) for n in NAMES[:2]], "approval: {required: always}\n")
    code, doc = cli(capsys, "apply", str(pipe), "--member", "acme")
    assert code == 5 and doc["member"] == "acme"
    assert doc["approval"]["approve"] == f'flamingock apply {pipe} --member acme --approve "NOTE"'
    assert main(["apply", str(pipe)]) == 5  # every member's plan, then how to approve the whole rollout
    human = capsys.readouterr().out
    assert "  acme: apply 2" in human and "  globex: apply 2" in human
    assert f'to go on run: flamingock apply {pipe} --approve "NOTE"' in human
    assert tables(tmp_path, "acme") == [] and tables(tmp_path, "globex") == []
    code, done = cli(capsys, "apply", str(pipe), "--member", "globex", "--approve", "ok")
    assert code == 0 and done["applied"] == ["accounts", "by-name"] and tables(tmp_path, "acme") == []


def test_human_output_of_a_whole_fleet_counts_per_member_then_details_who_needs_a_person(
    tenants: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tenants)
    with sqlite3.connect(tmp_path / "globex.db") as conn:
        conn.execute("CREATE VIEW accounts AS SELECT 1 AS id")
    fix = f"flamingock fix {d} accounts --as rolled-back --member globex"

    assert main(["plan", d]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("  ")] == [
        "  acme: apply 2",
        "  globex: apply 2",
        "  initech: apply 2",
    ]
    assert main(["apply", d]) == 1
    out = capsys.readouterr().out
    assert "  acme: applied 2, skipped 0  ok" in out and "  globex: applied 0, skipped 0  FAILED" in out
    assert "FAILED: member globex: change accounts:" in out and "not started" not in out  # globex was in the last wave
    assert main(["apply", d]) == 4
    out = capsys.readouterr().out
    assert "  globex: applied 0, skipped 0  BLOCKED" in out and f"  fix: {fix}" in out
    for command in ("status", "plan"):
        assert main([command, d]) == 0
        out = capsys.readouterr().out
        assert "  acme: skip 2" in out and "  globex: apply 1, blocked 1" in out, out
        assert "BLOCKED: member globex: change accounts (" in out and f"  fix: {fix}" in out
    assert main(["status", d, "--member", "globex"]) == 0
    assert capsys.readouterr().out.startswith("member globex: pipeline tenants  lock: free\n")  # said once


def test_a_failed_canary_says_which_members_did_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = fleet(tmp_path, [member(tmp_path, monkeypatch, n) for n in NAMES], waves="[1, rest]")
    with sqlite3.connect(tmp_path / "acme.db") as conn:
        conn.execute("CREATE TABLE accounts (x INT)")  # the canary's CREATE TABLE fails
    assert main(["apply", str(pipe)]) == 1
    out = capsys.readouterr().out
    assert "  acme: applied 0, skipped 0  FAILED" in out and "FAILED: member acme: change accounts:" in out
    assert "not started (halted after wave 1, on_error: halt): globex, initech" in out
    assert tables(tmp_path, "globex") == [] and tables(tmp_path, "initech") == []
