"""``validate`` risks, ``plan`` risk/impact/``--sql`` and ``undo --plan`` (SPEC §11, §14) on real SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from flamingock_provider.core.model import TargetConfig
from flamingock_provider.core.targets import TargetSession
from flamingock_provider.targets import open_target
from tests.cli.test_cli import run, run_json
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree

FILES = {
    "pipeline.yaml": WAREHOUSE_PIPELINE + "default_target: warehouse\n",
    "01_schema/0001_orders.yaml": sql_unit(
        "orders",
        "CREATE TABLE orders (id INT, status TEXT, note TEXT); CREATE INDEX ix_status ON orders (status)",
        "DROP TABLE orders",
    ),
    "01_schema/0002_seed.yaml": sql_unit(
        "seed",
        "INSERT INTO orders VALUES (1, 'old', 'a'), (2, 'old', NULL), (3, 'new', 'c')",
        "DELETE FROM orders",
    ),
    "02_cleanup/0003_purge.yaml": (
        "id: purge-old\nauthor: tester\ntemplate: sql\napply:\n  statements: |\n"
        "    DELETE FROM orders WHERE status = '{{ params.status | default(\"old\") }}'\n"
        "rollback: {statements: SELECT 1}\n"
    ),
    "02_cleanup/0004_drop_note.yaml": sql_unit("drop-note", "ALTER TABLE orders DROP COLUMN note", risk="safe"),
}


@pytest.fixture
def pipe(tmp_path: Path, sqlite_target: Path) -> Path:
    return write_tree(tmp_path / "orders", FILES)


def test_validate_lists_every_unit_risk_and_warns_on_a_lower_declaration(pipe: Path) -> None:
    doc = run_json("validate", str(pipe))
    assert [(r["id"], r["risk"]) for r in doc["risks"]] == [
        ("orders", "safe"),
        ("seed", "safe"),
        ("purge-old", "rewrite"),
        ("drop-note", "destructive"),
    ]
    purge = doc["risks"][2]["reasons"]
    assert purge == [
        "rewrite: DELETE FROM orders WHERE status = '{{ params.status | default(\"old\") }}': "
        "deletes the rows of orders matching its WHERE"
    ]
    (warning,) = [w for w in doc["warnings"] if "field 'risk'" in w["message"]]
    assert warning["file"] == "02_cleanup/0004_drop_note.yaml" and "declared 'safe'" in warning["message"]
    human = run("validate", str(pipe)).stdout
    assert "drop-note" in human and "destructive" in human and "WARNING 02_cleanup/0004_drop_note.yaml" in human


def test_plan_gives_risk_and_impact_of_pending_units_read_only(pipe: Path, sqlite_target: Path) -> None:
    commands.apply(pipe, until="seed")
    before = sqlite_target.read_bytes()
    doc = run_json("plan", str(pipe))
    changes = {c["id"]: c for c in doc["changes"]}
    assert {k: (c["action"], c["risk"]) for k, c in changes.items()} == {
        "orders": ("skip", "safe"),
        "seed": ("skip", "safe"),
        "purge-old": ("apply", "rewrite"),
        "drop-note": ("apply", "destructive"),
    }
    assert changes["purge-old"]["impact"] == "table orders: 2 rows match the WHERE"
    assert changes["drop-note"]["impact"] == "column orders.note: 2 non-null values"
    assert changes["orders"]["impact"] is None and "rendered" not in changes["orders"]
    assert sqlite_target.read_bytes() == before  # plan wrote nothing
    human = run("plan", str(pipe)).stdout
    assert "table orders: 2 rows match the WHERE" in human and "IMPACT" in human


def test_impact_is_null_when_it_cannot_tell(pipe: Path) -> None:
    doc = commands.plan(pipe)  # nothing applied: table orders does not exist yet
    assert [c["impact"] for c in doc["changes"]] == [None, None, None, None]


def test_status_gives_risk_per_change(pipe: Path) -> None:
    doc = run_json("status", str(pipe))
    assert [c["risk"] for c in doc["changes"]] == ["safe", "safe", "rewrite", "destructive"]


class Traced:
    """Opens targets like the engine does and records every statement SQLite executes on them."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, config: TargetConfig) -> TargetSession:
        session = open_target(config)
        session.native.set_trace_callback(self.statements.append)
        return session

    def executed(self) -> list[str]:
        bookkeeping = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")
        return [s for s in self.statements if not s.startswith(bookkeeping) and "flamingock_markers" not in s]


@pytest.fixture
def traced() -> Iterator[Traced]:
    yield Traced()


def _apply_traced(pipe: Path, traced: Traced, params: dict[str, Any]) -> dict[str, Any]:
    with commands.workspace(pipe) as ws, commands.holding(ws) as lease:
        run_info = commands.new_run(lease.owner, params)
        return ws.engine(lease=lease, run=run_info, targets=traced).apply().to_json()


def test_plan_sql_is_exactly_what_apply_then_executes(pipe: Path, traced: Traced) -> None:
    params = {"status": "new"}
    doc = commands.plan(pipe, sql=True, params=params)
    rendered = [s for c in doc["changes"] for s in c["rendered"]]
    assert "DELETE FROM orders WHERE status = 'new'" in rendered
    result = _apply_traced(pipe, traced, params)
    assert result["applied"] == ["orders", "seed", "purge-old", "drop-note"]
    assert traced.executed() == rendered


def test_plan_sql_through_the_cli(pipe: Path) -> None:
    doc = run_json("plan", str(pipe), "--sql")
    purge = next(c for c in doc["changes"] if c["id"] == "purge-old")
    assert purge["rendered"] == ["DELETE FROM orders WHERE status = 'old'"]
    human = run("plan", str(pipe), "--sql").stdout
    assert "-- purge-old (cleanup): rewrite\nDELETE FROM orders WHERE status = 'old';" in human


def test_undo_plan_shows_the_rollbacks_undo_would_run_and_changes_nothing(pipe: Path, sqlite_target: Path) -> None:
    commands.apply(pipe, until="seed")
    doc = run_json("undo", str(pipe), "--to", "orders", "--plan")
    assert doc["undo"] == [{"id": "seed", "stage": "schema", "risk": "safe", "rollback": ["DELETE FROM orders"]}]
    with sqlite3.connect(sqlite_target) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (3,)
    human = run("undo", str(pipe), "--to", "orders", "--plan").stdout
    assert "-- seed (schema): safe\nDELETE FROM orders;" in human
    assert run_json("undo", str(pipe), "--to", "orders")["rolled_back"] == ["seed"]


def test_done_units_take_the_level_their_audit_entry_recorded(pipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flamingock_provider.templates import _sql_risk

    commands.apply(pipe)
    expected = [c["risk"] for c in commands.plan(pipe)["changes"]]
    assert expected == ["safe", "safe", "rewrite", "destructive"]

    def refuse(*args: object) -> None:
        raise AssertionError("a done, unchanged unit was parsed again")

    monkeypatch.setattr(_sql_risk, "analyse", refuse)
    assert [c["risk"] for c in commands.plan(pipe)["changes"]] == expected
    assert [c["risk"] for c in commands.status(pipe)["changes"]] == expected
