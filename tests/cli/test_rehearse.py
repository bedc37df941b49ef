"""``flamingock rehearse`` on SQLite: a real scratch file, the real target and audit store left untouched."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from flamingock_provider import commands
from flamingock_provider.core.loader import validate_pipeline
from flamingock_provider.exceptions import RehearsalRefusedError
from tests.conftest import VENV_BIN, WAREHOUSE_PIPELINE, sql_unit, write_tree
from tests.fixtures.aws_pipelines import unit
from tests.fixtures.http_api import HttpApi

ORDERS = sql_unit(
    "orders",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER NOT NULL DEFAULT 0)",
    "DROP TABLE orders",
)
GOOD = {
    "01_schema/0001_orders.yaml": ORDERS,
    "01_schema/0002_discount.yaml": sql_unit(
        "discount",
        "ALTER TABLE orders ADD COLUMN discount INTEGER",
        "ALTER TABLE orders DROP COLUMN discount",
    ),
    "02_data/0003_seed.yaml": sql_unit(
        "seed", "INSERT INTO orders (id, total) VALUES (1, 10), (2, 20)", "DELETE FROM orders WHERE id IN (1, 2)"
    ),
}


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_target: Path) -> Path:
    """A scratch SQLite file as ``warehouse_scratch``, beside the real ``warehouse_db``."""
    db = tmp_path / "scratch.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_SCRATCH", f"sqlite:///{db}")
    return db


def objects(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall())


def test_a_correct_pipeline_passes_and_never_touches_the_real_target(
    tmp_path: Path, scratch: Path, sqlite_target: Path
) -> None:
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": WAREHOUSE_PIPELINE, **GOOD})
    report = commands.rehearse(pipe, {"warehouse": "warehouse_scratch"})
    assert report["ok"] is True, report
    assert report["mismatches"] == [] and report["not_rehearsed"] == []
    assert report["rehearsed"] == ["orders", "discount", "seed"] and report["snapshots"] == 10
    assert objects(sqlite_target) == []  # the real warehouse: nothing created
    assert commands.history(pipe)["entries"] == []  # the real audit store: read, never written
    assert ("table", "orders") in objects(scratch)  # the second apply's result stays on scratch


def test_a_rollback_that_forgets_a_column_an_index_and_rows_is_reported_for_its_unit(
    tmp_path: Path, scratch: Path
) -> None:
    files = {
        "01_schema/0001_orders.yaml": ORDERS,
        "01_schema/0002_discount.yaml": (
            "id: discount\nauthor: tester\ntemplate: sql\napply:\n  statements:\n"
            "    - ALTER TABLE orders ADD COLUMN discount INTEGER\n    - CREATE INDEX ix_total ON orders (total)\n"
            "rollback: {statements: SELECT 1}\n"
        ),
        "02_data/0003_seed.yaml": sql_unit(
            "seed", "INSERT INTO orders (id, total) VALUES (1, 10), (2, 20)", "DELETE FROM orders WHERE id = 1"
        ),
    }
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": WAREHOUSE_PIPELINE, **files})
    report = commands.rehearse(pipe, {"warehouse": "warehouse_scratch"})
    assert report["ok"] is False
    assert report["mismatches"] == [
        {"id": "seed", "phase": "undo", "detail": "table orders: rows is 1, was 0 before"},
        {"id": "discount", "phase": "undo", "detail": "table orders: column discount still present"},
        {"id": "discount", "phase": "undo", "detail": "table orders: index ix_total still present"},
    ]


def test_a_second_apply_that_differs_is_reported_as_reapply(tmp_path: Path, scratch: Path) -> None:
    # The rollback leaves a table behind: the second apply then creates nothing new, but copies twice.
    files = {
        "01_schema/0001_log.yaml": sql_unit("log", "CREATE TABLE log (x INT)", "DELETE FROM log"),
        "01_schema/0002_fill.yaml": sql_unit("fill", "INSERT INTO log VALUES (1)", "SELECT 1"),
    }
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": WAREHOUSE_PIPELINE, **files})
    report = commands.rehearse(pipe, {"warehouse": "warehouse_scratch"})
    phases = [(m["id"], m["phase"]) for m in report["mismatches"]]
    assert ("fill", "undo") in phases and ("log", "undo") in phases
    assert {"id": "log", "phase": "reapply", "detail": "the second apply failed: table log already exists"} in report[
        "mismatches"
    ]


def test_only_the_pending_units_are_rehearsed(tmp_path: Path, scratch: Path, sqlite_target: Path) -> None:
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": WAREHOUSE_PIPELINE, **GOOD})
    assert commands.apply(pipe, until="orders")["applied"] == ["orders"]
    with sqlite3.connect(scratch) as conn:  # the scratch copy of production: orders exists there too
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER NOT NULL DEFAULT 0)")
    report = commands.rehearse(pipe, {"warehouse": "warehouse_scratch"})
    assert report["ok"] is True, report
    assert report["rehearsed"] == ["discount", "seed"]
    assert [c["state"] for c in commands.status(pipe)["changes"]] == ["APPLIED", None, None]  # real log unchanged


def test_a_unit_without_rollback_is_reported_and_the_older_ones_still_rehearse(tmp_path: Path, scratch: Path) -> None:
    files = {
        "01_schema/0001_orders.yaml": ORDERS,
        "01_schema/0002_audit.yaml": sql_unit("audit", "CREATE TABLE audit_trail (x INT)", transactional="false"),
    }
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": WAREHOUSE_PIPELINE, **files})
    report = commands.rehearse(pipe, {"warehouse": "warehouse_scratch"})
    assert report["mismatches"] == [
        {
            "id": "audit",
            "phase": "undo",
            "detail": "no rollback: it cannot be undone, so it stays in place on the target",
        }
    ]
    assert report["rehearsed"] == ["orders", "audit"]


def test_a_scratch_equal_to_the_real_target_is_refused_also_through_an_alias(
    tmp_path: Path, scratch: Path, sqlite_target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": WAREHOUSE_PIPELINE, **GOOD})
    with pytest.raises(RehearsalRefusedError, match="'warehouse_db' is the connection of target 'warehouse'"):
        commands.rehearse(pipe, {"warehouse": "warehouse_db"})
    alias = tmp_path / "sub" / ".." / sqlite_target.name  # another path of the same file
    (tmp_path / "sub").mkdir()
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_ALIAS", f"sqlite:///{alias}")
    with pytest.raises(RehearsalRefusedError, match="'warehouse_alias' reaches sqlite .*warehouse.db, as does target"):
        commands.rehearse(pipe, {"warehouse": "warehouse_alias"})
    assert objects(sqlite_target) == [] and objects(scratch) == []  # nothing ran anywhere


def test_a_scratch_naming_no_target_or_a_missing_mapping_is_refused(tmp_path: Path, scratch: Path) -> None:
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": WAREHOUSE_PIPELINE, **GOOD})
    with pytest.raises(RehearsalRefusedError, match="no such target \\(did you mean 'warehouse'\\?\\)"):
        commands.rehearse(pipe, {"wharehouse": "warehouse_scratch"})
    with pytest.raises(
        RehearsalRefusedError, match="no scratch connection for target\\(s\\) warehouse \\(used by orders"
    ):
        commands.rehearse(pipe, {})
    assert objects(scratch) == []


def test_rehearsal_scratch_in_pipeline_yaml_is_validated_at_parse_time(tmp_path: Path) -> None:
    yaml = WAREHOUSE_PIPELINE + "rehearsal: {scratch: {wharehouse: warehouse_scratch, warehouse: warehouse_db}}\n"
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": yaml, **GOOD})
    messages = [issue.message for issue in validate_pipeline(pipe).errors]
    assert any("'rehearsal.scratch.wharehouse': unknown target 'wharehouse' (did you mean" in m for m in messages)
    assert any("'warehouse_db' is the real connection of target 'warehouse'" in m for m in messages)
    ok = write_tree(tmp_path / "ok", {"pipeline.yaml": WAREHOUSE_PIPELINE + "rehearsal: {scratch: {warehouse: s}}\n"})
    report = validate_pipeline(ok)
    assert report.pipeline is not None and report.pipeline.rehearsal_scratch == {"warehouse": "s"}


@pytest.mark.slow
def test_the_cli_prints_the_spec_json_and_exits_1_when_not_ok(tmp_path: Path, scratch: Path) -> None:
    files = {
        **GOOD,
        "01_schema/0002_discount.yaml": sql_unit("discount", "ALTER TABLE orders ADD COLUMN d INT", "SELECT 1"),
    }
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": WAREHOUSE_PIPELINE, **files})
    done = subprocess.run(
        [str(VENV_BIN / "flamingock"), "rehearse", str(pipe), "--scratch", "warehouse=warehouse_scratch", "--json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert {"pipeline", "ok", "mismatches", "not_rehearsed"} <= set(doc) and doc["ok"] is False
    assert doc["mismatches"] == [{"id": "discount", "phase": "undo", "detail": "table orders: column d still present"}]
    refused = subprocess.run(
        [str(VENV_BIN / "flamingock"), "rehearse", str(pipe), "--scratch", "warehouse=warehouse_db"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert refused.returncode == 1 and "is the connection of target 'warehouse'" in refused.stderr


@pytest.mark.slow  # the HTTP target imports Airflow's HttpHook
def test_an_http_unit_runs_on_its_scratch_api_and_is_listed_not_rehearsed(
    tmp_path: Path, scratch: Path, http_api: HttpApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_API_SCRATCH", json.dumps(http_api.connection))
    monkeypatch.setenv("AIRFLOW_CONN_REAL_API", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9}))
    register = {"method": "POST", "endpoint": "/sources", "json": {"name": "orders"}}
    files = {
        **GOOD,
        "02_data/0004_register.yaml": unit(
            "register",
            "http.request",
            register,
            target="api",
            rollback={"method": "DELETE", "endpoint": "/sources/orders"},
        ),
    }
    yaml = "targets:\n  warehouse: {conn_id: warehouse_db}\n  api: {conn_id: real_api}\ndefault_target: warehouse\n"
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": yaml, **files})
    report = commands.rehearse(pipe, {"warehouse": "warehouse_scratch", "api": "api_scratch"})
    assert report["ok"] is True, report
    assert report["not_rehearsed"] == ["register"] and report["rehearsed"] == ["orders", "discount", "seed"]
    assert http_api.calls() == [("POST", "/sources"), ("DELETE", "/sources/orders"), ("POST", "/sources")]
