"""The ``flamingock`` console script: every command's JSON shape and exit code (SPEC §11)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import VENV_BIN, WAREHOUSE_PIPELINE, sql_unit, write_tree


def run(*args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(VENV_BIN / "flamingock"), *args], capture_output=True, text=True, env=os.environ.copy(), timeout=120
    )
    if expect is not None:
        assert proc.returncode == expect, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def run_json(*args: str, expect: int = 0) -> dict:  # type: ignore[type-arg]
    proc = run(*args, "--json", expect=expect)
    return json.loads(proc.stdout)


@pytest.fixture
def pipe(tmp_path: Path, sqlite_target: Path) -> Path:
    return write_tree(
        tmp_path / "sales",
        {
            "pipeline.yaml": WAREHOUSE_PIPELINE,
            "01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
            "01_schema/0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)", "DROP TABLE b"),
            "02_data/0003_c.yaml": sql_unit("c", "INSERT INTO b VALUES (1)", "DELETE FROM b"),
        },
    )


def test_validate_json_and_exit_codes(pipe: Path) -> None:
    doc = run_json("validate", str(pipe))
    assert doc["ok"] is True and doc["errors"] == []
    assert doc["stages"] == [{"name": "schema", "changes": ["a", "b"]}, {"name": "data", "changes": ["c"]}]
    (pipe / "02_data/0004_d.yaml").write_text(
        "id: d\nauthor: t\ntemplate: sql\napply: {statements: x}\ntarget: warehous\n"
    )
    bad = run_json("validate", str(pipe), expect=1)
    assert bad["ok"] is False
    assert (
        bad["errors"][0]["file"] == "02_data/0004_d.yaml" and "did you mean 'warehouse'" in bad["errors"][0]["message"]
    )
    human = run("validate", str(pipe), expect=1)
    assert "02_data/0004_d.yaml" in human.stdout


def test_warning_for_non_compensable_unit(pipe: Path) -> None:
    (pipe / "02_data/0004_d.yaml").write_text(sql_unit("d", "SELECT 1", transactional="false"))
    doc = run_json("validate", str(pipe))
    assert doc["ok"] and any("not compensable" in w["message"] for w in doc["warnings"])


def test_plan_apply_status_history(pipe: Path) -> None:
    plan = run_json("plan", str(pipe))
    assert plan["pipeline"] == "sales" and plan["lock"] is None
    assert [(c["id"], c["stage"], c["state"], c["action"]) for c in plan["changes"]] == [
        ("a", "schema", None, "apply"),
        ("b", "schema", None, "apply"),
        ("c", "data", None, "apply"),
    ]
    applied = run_json("apply", str(pipe), "--until", "b")
    assert applied == applied | {
        "pipeline": "sales",
        "applied": ["a", "b"],
        "skipped": [],
        "failed": None,
        "blocked": None,
    }
    status = run_json("status", str(pipe))
    assert [c["state"] for c in status["changes"]] == ["APPLIED", "APPLIED", None]
    history = run_json("history", str(pipe), "--change", "a")
    assert [e["state"] for e in history["entries"]] == ["STARTED", "APPLIED"]
    assert {"change_id", "state", "action", "created_at", "execution_id"} <= set(history["entries"][0])
    human = run("status", str(pipe))
    assert "APPLIED" in human.stdout and "lock: free" in human.stdout


def test_failed_apply_exits_1_and_blocked_exits_4(pipe: Path) -> None:
    (pipe / "02_data/0003_c.yaml").write_text(
        sql_unit("c", "INSERT INTO nope VALUES (1)", "DROP TABLE nope", transactional="false")
    )
    failed = run_json("apply", str(pipe), expect=1)
    assert failed["failed"]["id"] == "c" and "nope" in failed["failed"]["error"]
    blocked = run_json("apply", str(pipe), expect=4)
    assert blocked["blocked"]["id"] == "c" and blocked["blocked"]["state"] == "ROLLBACK_FAILED"
    assert blocked["blocked"]["fix"] == f"flamingock fix {pipe} c --as rolled-back"
    human = run("apply", str(pipe), expect=4)
    assert "flamingock fix" in human.stdout and "Traceback" not in human.stderr
    fixed = run_json("fix", str(pipe), "c", "--as", "rolled-back")
    assert fixed["state"] == "MANUAL_MARKED_AS_ROLLED_BACK"


def test_undo_json(pipe: Path) -> None:
    run_json("apply", str(pipe))
    doc = run_json("undo", str(pipe), "--to", "a")
    assert doc["rolled_back"] == ["c", "b"] and doc["failed"] is None and doc["blocked"] is None
    assert run_json("undo", str(pipe), "--last", "1")["rolled_back"] == ["a"]


def test_usage_errors_exit_2(pipe: Path) -> None:
    assert "FAILED" in run("undo", str(pipe), expect=2).stderr  # neither --to nor --last
    run("frobnicate", str(pipe), expect=2)
    run("fix", str(pipe), "a", "--as", "sideways", expect=2)
    unknown = run("apply", str(pipe), "--until", "zzz", expect=2)
    assert "no such change" in unknown.stderr and "Traceback" not in unknown.stderr


def test_invalid_pipeline_fails_with_file_and_no_traceback(pipe: Path) -> None:
    (pipe / "01_schema/0002_b.yaml").write_text("id: b\nauthor: t\ntemplate: sql.exec\napply: {}\n")
    proc = run("apply", str(pipe), expect=1)
    assert "FAILED:" in proc.stderr and "01_schema/0002_b.yaml" in proc.stderr and "Traceback" not in proc.stderr
    assert "Traceback" in run("apply", str(pipe), "--traceback", expect=1).stderr


def test_lock_timeout_exits_3_and_unlock(pipe: Path) -> None:
    from flamingock_provider.core.paths import embedded_store_path
    from flamingock_provider.stores.sqlite import SqliteStore

    (pipe / "pipeline.yaml").write_text(
        WAREHOUSE_PIPELINE.replace(
            "{poke_interval_seconds: 0.1}", "{poke_interval_seconds: 0.1, wait_timeout_seconds: 0.5}"
        )
    )
    store = SqliteStore(embedded_store_path())
    assert store.acquire("sales", "cli/elsewhere/1/dead", 600) is not None
    proc = run("apply", str(pipe), expect=3)
    assert "cli/elsewhere/1/dead" in proc.stderr and "flamingock unlock" in proc.stderr
    assert run_json("status", str(pipe))["lock"]["owner"] == "cli/elsewhere/1/dead"
    assert "--force" in run("unlock", str(pipe), expect=1).stderr  # live lease needs --force
    released = run_json("unlock", str(pipe), "--force")
    assert released["released"] is True and released["previous"]["owner"] == "cli/elsewhere/1/dead"
    assert run_json("apply", str(pipe))["applied"] == ["a", "b", "c"]


def test_validate_warns_when_lease_and_audit_store_differ(pipe: Path) -> None:
    (pipe / "pipeline.yaml").write_text(WAREHOUSE_PIPELINE.replace("lock: {", "lock: {conn_id: redis_locks, "))
    doc = run_json("validate", str(pipe))
    [warning] = [w for w in doc["warnings"] if "lock.conn_id" in w["message"]]
    assert warning["file"] == "pipeline.yaml" and "embedded SQLite store" in warning["message"]
