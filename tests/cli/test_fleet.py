"""Fleets end to end through the commands and the CLI (SPEC §13), on real databases.

One pipeline, 20 SQLite members, 2 members whose documents live in their own MongoDB database
(SecantusDB) and one whose SQL target is PostgreSQL: waves, halt and continue, per-member undo and
fix, members from a Variable (``AIRFLOW_VAR_*``), a member added later, a missing connection, and two
processes racing on one member.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from flamingock_provider.cli.main import main
from flamingock_provider.exceptions import UnknownMemberError, UsageError
from tests.conftest import REPO, VENV_BIN, write_tree
from tests.fixtures.mongo_server import MongoServer

SQLITE_MEMBERS = 20
UNITS = {
    "0001_table.yaml": (
        "id: table\nauthor: t\ntarget: app\ntemplate: sql\ntransactional: false\n"
        "apply: {statements: 'CREATE TABLE t (x INT)'}\nrollback: {statements: 'DROP TABLE t'}\n"
    ),
    "0002_seed.yaml": (
        "id: seed\nauthor: t\ntarget: app\ntemplate: sql\n"
        "apply: {statements: 'INSERT INTO t VALUES (1)'}\nrollback: {statements: 'DELETE FROM t'}\n"
    ),
    "0003_setting.yaml": (
        "id: setting\nauthor: t\ntarget: docs\ntemplate: mongo.insert\n"
        "apply: {collection: settings, documents: [{key: theme, value: dark}]}\n"
    ),
}


def sqlite_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> dict[str, Any]:
    monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}_DB", f"sqlite:///{tmp_path / (name + '.db')}")
    return {"name": name, "targets": {"app": f"{name}_db"}}


def fleet_pipeline(tmp_path: Path, members: list[dict[str, Any]] | None, fleet_extra: str = "") -> Path:
    source = f"  members: {json.dumps(members)}\n" if members is not None else "  members_from: {variable: tenants}\n"
    yaml = (
        "targets:\n  app: {conn_id: base_db}\n  docs: {conn_id: shared_mongo, database: shared}\n"
        "lock: {poke_interval_seconds: 0.05, wait_timeout_seconds: 60}\n"
        f"fleet:\n{source}{fleet_extra}"
    )
    return write_tree(tmp_path / "tenants", {"pipeline.yaml": yaml, **UNITS})


@pytest.fixture
def shared_mongo(mongo_server: MongoServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    """The pipeline's own ``docs`` target: a database every member without its own one writes to."""
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_MONGO", mongo_server.connection_json("unused"))
    client = mongo_server.client()
    prefix = f"f{abs(hash(request.node.nodeid)) % 10**6}"
    yield client, prefix
    client.close()


def members_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> list[dict[str, Any]]:
    return [sqlite_member(tmp_path, monkeypatch, f"m{i:02d}") for i in range(n)]


def rows(tmp_path: Path, name: str) -> list[int] | None:
    """The rows of table t in member ``name``'s SQLite database, None when the table is absent."""
    with sqlite3.connect(tmp_path / f"{name}.db") as conn:
        try:
            return [r[0] for r in conn.execute("SELECT x FROM t")]
        except sqlite3.OperationalError:
            return None


def outcome(doc: dict[str, Any]) -> dict[str, tuple[int, bool, bool]]:
    return {r["member"]: (len(r["applied"]), bool(r["failed"]), bool(r["blocked"])) for r in doc["members"]}


@pytest.mark.slow
def test_a_heterogeneous_fleet_applies_every_member_in_waves_each_with_its_own_trail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_mongo: Any, postgres_db: tuple[str, str]
) -> None:
    client, prefix = shared_mongo
    mongo_server_json = json.loads(os.environ["AIRFLOW_CONN_SHARED_MONGO"])
    members = members_of(tmp_path, monkeypatch, SQLITE_MEMBERS)
    for i in range(2):  # documents in their own MongoDB database
        member = sqlite_member(tmp_path, monkeypatch, f"mongo{i}")
        monkeypatch.setenv(f"AIRFLOW_CONN_MONGO{i}_DOCS", json.dumps(mongo_server_json))
        member["targets"]["docs"] = {"conn_id": f"mongo{i}_docs", "database": f"{prefix}_own{i}"}
        members.append(member)
    monkeypatch.setenv("AIRFLOW_CONN_PG_APP", postgres_db[1])
    members.append({"name": "pg", "targets": {"app": "pg_app"}})  # its SQL target is PostgreSQL
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_MONGO", json.dumps({**mongo_server_json, "schema": f"{prefix}_shared"}))
    pipe = fleet_pipeline(tmp_path, members, "  waves: [1, '25%', rest]\n  max_parallel: 4\n")
    pipe.joinpath("pipeline.yaml").write_text(
        pipe.joinpath("pipeline.yaml").read_text().replace("database: shared", f"database: {prefix}_shared")
    )

    doc = commands.apply(pipe)
    names = [m["name"] for m in members]
    assert [len(w) for w in doc["waves"]] == [1, 6, 16] and [n for w in doc["waves"] for n in w] == names
    assert doc["halted_after_wave"] is None and doc["not_started"] == []
    assert outcome(doc) == {name: (3, False, False) for name in names}
    assert all(rows(tmp_path, name) == [1] for name in names if name != "pg")
    assert client[f"{prefix}_shared"].settings.count_documents({}) == SQLITE_MEMBERS + 1  # 20 + pg
    assert [client[f"{prefix}_own{i}"].settings.count_documents({}) for i in range(2)] == [1, 1]

    status = commands.status(pipe)
    assert [r["member"] for r in status["members"]] == names
    assert all(c["action"] == "skip" for r in status["members"] for c in r["changes"])
    history = commands.history(pipe, member="mongo1")
    assert history["member"] == "mongo1" and {e["member"] for e in history["entries"]} == {"mongo1"}
    assert len(history["entries"]) == 6  # STARTED + APPLIED of 3 units: nobody else's entries

    again = commands.apply(pipe)
    assert outcome(again) == {name: (0, False, False) for name in names}


def test_a_failing_canary_halts_the_rollout_and_continue_finishes_every_wave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_mongo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    members = members_of(tmp_path, monkeypatch, 6)
    with sqlite3.connect(tmp_path / "m00.db") as conn:
        conn.execute("CREATE TABLE t (y INT)")  # the canary's CREATE TABLE fails
    pipe = fleet_pipeline(tmp_path, members, "  waves: [1, '50%', rest]\n  max_parallel: 2\n")

    assert main(["apply", str(pipe), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["halted_after_wave"] == 1 and outcome(doc) == {"m00": (0, True, False)}
    assert doc["not_started"] == ["m01", "m02", "m03", "m04", "m05"]
    assert all(rows(tmp_path, f"m0{i}") is None for i in range(1, 6))  # nothing else was touched

    # The canary's compensation dropped its stray table (ROLLED_BACK: it applies again). Now member m03
    # (wave 2 of 3) fails in a way its rollback cannot undo either; with continue every wave still runs.
    with sqlite3.connect(tmp_path / "m03.db") as conn:
        conn.execute("CREATE VIEW t AS SELECT 1 AS y")  # CREATE TABLE t fails, and so does DROP TABLE t
    yaml = pipe / "pipeline.yaml"
    yaml.write_text(yaml.read_text() + "  on_error: continue\n")
    assert main(["apply", str(pipe)]) == 1
    human = capsys.readouterr().out
    assert "  m03: applied 0, skipped 0  FAILED" in human and "FAILED: member m03: change table" in human
    assert "  m05: applied 3, skipped 0  ok" in human and "halted" not in human

    # The failed member is blocked now (a non-transactional unit failed): its fix names the member.
    status = commands.status(pipe)
    blocked = [(r["member"], c["fix"]) for r in status["members"] for c in r["changes"] if c["action"] == "blocked"]
    assert blocked == [("m03", f"flamingock fix {pipe} table --as rolled-back --member m03")]
    assert main(["status", str(pipe)]) == 0
    assert "BLOCKED: member m03: change table" in capsys.readouterr().out
    assert main(["apply", str(pipe), "--member", "m03", "--json"]) == 4
    assert json.loads(capsys.readouterr().out)["member"] == "m03"
    fixed = commands.fix(pipe, "table", "rolled-back", member="m03")
    assert fixed["member"] == "m03" and fixed["entry"]["member"] == "m03"


def test_undo_of_one_member_touches_no_other_and_commands_need_a_known_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_mongo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    members = members_of(tmp_path, monkeypatch, 3)
    pipe = fleet_pipeline(tmp_path, members, "  max_parallel: 3\n")
    commands.apply(pipe, until="seed")

    undone = commands.undo(pipe, to="table", member="m01")
    assert undone["member"] == "m01" and undone["rolled_back"] == ["seed"]
    assert [rows(tmp_path, n) for n in ("m00", "m01", "m02")] == [[1], [], [1]]
    status = {r["member"]: [c["action"] for c in r["changes"]] for r in commands.status(pipe)["members"]}
    assert status == {
        "m00": ["skip", "skip", "apply"],
        "m01": ["skip", "apply", "apply"],
        "m02": ["skip", "skip", "apply"],
    }

    with pytest.raises(UsageError, match=r"is a fleet: give --member NAME \(members: m00, m01, m02\)"):
        commands.undo(pipe, to="table")
    assert main(["status", str(pipe), "--member", "nobody"]) == 1
    assert "--member 'nobody': no such member in the fleet; the members are: m00, m01, m02" in capsys.readouterr().err
    with pytest.raises(UnknownMemberError):
        commands.history(pipe, member="nobody")


def test_members_from_a_variable_and_a_member_added_later_applies_only_its_own_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_mongo: Any
) -> None:
    members = members_of(tmp_path, monkeypatch, 3)
    monkeypatch.setenv("AIRFLOW_VAR_TENANTS", json.dumps(members[:2]))
    pipe = fleet_pipeline(tmp_path, None, "  max_parallel: 2\n")
    assert outcome(commands.apply(pipe)) == {"m00": (3, False, False), "m01": (3, False, False)}

    monkeypatch.setenv("AIRFLOW_VAR_TENANTS", json.dumps(members))
    assert outcome(commands.apply(pipe)) == {
        "m00": (0, False, False),
        "m01": (0, False, False),
        "m02": (3, False, False),
    }

    monkeypatch.setenv("AIRFLOW_VAR_TENANTS", '[{"name": "Bad"}]')
    with pytest.raises(Exception, match="Airflow Variable 'tenants'.*invalid value 'Bad'"):
        commands.status(pipe)


@pytest.mark.slow
def test_a_member_whose_connection_is_missing_fails_alone_naming_member_and_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_mongo: Any
) -> None:
    members = [*members_of(tmp_path, monkeypatch, 2), {"name": "ghost", "targets": {"app": "ghost_db"}}]
    pipe = fleet_pipeline(tmp_path, members, "  max_parallel: 3\n  on_error: continue\n")
    doc = commands.apply(pipe)
    assert outcome(doc) == {"m00": (3, False, False), "m01": (3, False, False), "ghost": (0, True, False)}
    failed = next(r["failed"] for r in doc["members"] if r["member"] == "ghost")
    assert failed["id"] is None
    assert failed["error"].startswith("member 'ghost': target 'app': connection 'ghost_db' is not defined")
    assert commands.history(pipe, member="ghost")["entries"] == []  # nothing was attempted


@pytest.mark.slow
def test_two_processes_racing_on_one_member_apply_each_unit_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_mongo: Any
) -> None:
    members = members_of(tmp_path, monkeypatch, 2)
    pipe = fleet_pipeline(tmp_path, members)
    racers = [
        subprocess.Popen(
            [str(VENV_BIN / "flamingock"), "apply", str(pipe), "--member", "m01", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=os.environ.copy(),
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.communicate()) for p in racers]
    assert [code for code, _ in results] == [0, 0], [err[-400:] for _, (_, err) in results]
    docs = [json.loads(out) for _, (out, _) in results]
    assert sorted(len(d["applied"]) for d in docs) == [0, 3]  # the second waited for the lease, then skipped
    assert rows(tmp_path, "m01") == [1] and rows(tmp_path, "m00") is None  # the other member untouched
    applied = [e["change_id"] for e in commands.history(pipe, member="m01")["entries"] if e["state"] == "APPLIED"]
    assert sorted(applied) == ["seed", "setting", "table"]
