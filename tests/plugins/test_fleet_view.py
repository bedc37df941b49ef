"""The Flamingock view of a fleet pipeline: a member-by-change matrix, blocked cells with their fix (SPEC §13)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from flamingock_provider import commands
from flamingock_provider.plugins.overview import pipeline_overview
from flamingock_provider.plugins.render import render_page
from tests.conftest import sql_unit, write_tree


def test_the_view_shows_each_member_by_change_and_the_fix_of_a_blocked_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = []
    for name in ("acme", "globex"):
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}_DB", f"sqlite:///{tmp_path / (name + '.db')}")
        members.append({"name": name, "targets": {"app": f"{name}_db"}})
    with sqlite3.connect(tmp_path / "globex.db") as conn:
        conn.execute("CREATE VIEW a AS SELECT 1 AS x")  # globex's CREATE TABLE fails, and so does DROP TABLE
    folder = write_tree(
        tmp_path / "changes" / "fleet_view",
        {
            "pipeline.yaml": "targets:\n  app: {conn_id: base_db}\n"
            f"fleet:\n  members: {json.dumps(members)}\n  on_error: continue\n",
            "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a", transactional="false"),
            "0002_b.yaml": sql_unit("b", "INSERT INTO a VALUES (1)"),
        },
    )
    commands.apply(folder)

    view = pipeline_overview(folder)
    assert view.fleet is not None and view.fleet.changes == ("a", "b") and view.units == ()
    cells = {r.member: [(c.state, c.action) for c in r.cells] for r in view.fleet.rows}
    assert cells == {
        "acme": [("APPLIED", "skip"), ("APPLIED", "skip")],
        "globex": [("ROLLBACK_FAILED", "blocked"), (None, "apply")],
    }
    html = render_page([view], root=str(tmp_path / "changes"), user="tester")
    assert 'data-role="fleet"' in html and '<tr data-member="globex">' in html
    assert f"flamingock fix {folder} a --as rolled-back --member globex" in html
    assert view.to_json()["fleet"]["members"][1]["cells"][0]["action"] == "blocked"
