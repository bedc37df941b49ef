"""The view shows paths relative to the DAGs folder and, per unit, when, by which run and by whom it last changed."""

from __future__ import annotations

from pathlib import Path

from flamingock_provider import commands
from flamingock_provider.plugins.overview import overview, pipeline_overview, shown_path
from flamingock_provider.plugins.render import render_page
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree


def test_paths_are_relative_to_the_dags_folder_and_never_absolute(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    assert shown_path(dags / "changes" / "shop", dags) == "changes/shop"
    assert shown_path(tmp_path / "elsewhere" / "shop", dags) == "shop"  # outside: only its name
    assert shown_path(dags / "changes", None) == "changes"


def test_each_unit_says_when_which_run_and_who_and_a_note_only_where_there_is_something_to_say(
    tmp_path: Path, sqlite_target: Path
) -> None:
    dags = tmp_path / "dags"
    folder = write_tree(
        dags / "changes" / "viewunits",
        {
            "pipeline.yaml": WAREHOUSE_PIPELINE + "default_target: warehouse\n",
            "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a"),
            "0002_b.yaml": sql_unit("b", "CREATE TABLE b (x INT)", "DROP TABLE b"),
            "0003_c.yaml": sql_unit("c", "CREATE TABLE c (x INT)", "DROP TABLE c"),
        },
    )
    assert commands.apply(folder, until="b")["applied"] == ["a", "b"]
    (folder / "0002_b.yaml").write_text(sql_unit("b", "CREATE TABLE b (y INT)", "DROP TABLE b"))  # drift
    [view] = overview(dags / "changes", dags)
    assert view.path == "changes/viewunits" and str(tmp_path) not in str(view.to_json())
    a, b, c = view.units
    assert a.changed_at and a.run_id is None and a.who and a.who.startswith("cli")  # the CLI wrote it
    assert a.note is None  # applied, nothing to say
    assert b.note and b.note.startswith("flamingock fix changes/viewunits b")  # blocked by drift: the fix
    assert c.changed_at is None and c.who is None and c.note is None  # never run
    html = render_page([view], root="changes", user="tester")
    assert str(tmp_path) not in html and "already applied" not in html
    assert 'data-role="when"' in html and 'data-role="who"' in html and 'data-role="run"' in html


def test_a_unit_written_by_an_airflow_run_links_to_that_run(tmp_path: Path, sqlite_target: Path) -> None:
    from flamingock_provider.core.audit import RunInfo
    from flamingock_provider.core.workspace import holding, open_workspace

    folder = write_tree(
        tmp_path / "changes" / "viewrun",
        {"pipeline.yaml": WAREHOUSE_PIPELINE + "default_target: warehouse\n", "0001_a.yaml": sql_unit("a", "SELECT 1")},
    )
    run = RunInfo(
        execution_id="e1",
        owner="flamingock_viewrun/manual__1",
        dag_id="flamingock_viewrun",
        run_id="manual__1",
        triggered_by="airflow:manual:admin",
    )
    with open_workspace(folder) as ws, holding(ws, run.owner) as lease:
        assert ws.engine(lease=lease, run=run).apply().done == ["a"]
    [row] = pipeline_overview(folder).units
    assert (row.dag_id, row.run_id, row.who) == ("flamingock_viewrun", "manual__1", "airflow:manual:admin")
    html = render_page([pipeline_overview(folder)], root="changes", user="tester")
    assert 'href="../dags/flamingock_viewrun/runs/manual__1"' in html
