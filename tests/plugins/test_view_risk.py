"""The Flamingock view shows each unit's risk, its reasons and the impact of pending risky units (SPEC §14)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flamingock_provider.plugins.overview import pipeline_overview
from flamingock_provider.plugins.render import render_page
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree


def test_view_rows_carry_risk_reasons_and_impact(tmp_path: Path, sqlite_target: Path) -> None:
    with sqlite3.connect(sqlite_target) as db:
        db.execute("CREATE TABLE legacy (x INT)")
        db.executemany("INSERT INTO legacy VALUES (?)", [(n,) for n in range(4)])
    folder = write_tree(
        tmp_path / "changes" / "view_risk",
        {
            "pipeline.yaml": WAREHOUSE_PIPELINE + "default_target: warehouse\n",
            "0001_add.yaml": sql_unit("add", "CREATE TABLE fresh (x INT)", "DROP TABLE fresh"),
            "0002_drop.yaml": sql_unit("drop-legacy", "DROP TABLE legacy"),
        },
    )
    view = pipeline_overview(folder)
    rows = {u.id: (u.risk, u.impact) for u in view.units}
    assert rows == {"add": ("safe", None), "drop-legacy": ("destructive", "table legacy: 4 rows")}
    assert view.to_json()["changes"][1]["reasons"] == [
        "destructive: DROP TABLE legacy: drops table legacy and every row in it"
    ]
    html = render_page([view], root=str(tmp_path / "changes"), user="tester")
    assert "risk-destructive" in html and "table legacy: 4 rows" in html
    assert "DROP TABLE legacy: drops table legacy and every row in it" in html
