"""The Flamingock view in the Airflow UI: Airflow's own auth, and what a signed-in user sees (headless Chromium)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flamingock_provider.core.paths import embedded_store_path
from flamingock_provider.plugins.overview import PipelineOverview, overview
from flamingock_provider.plugins.render import render_page
from flamingock_provider.stores.sqlite import SqliteStore
from tests.conftest import REPO, sql_unit, write_tree
from tests.e2e.harness import AirflowClient, AirflowServer, wait_until
from tests.e2e.pipelines import pipeline_yaml
from tests.e2e.test_runs import deploy

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOLDER = "cli/ops-laptop/4242/5f3a9c1e"


@dataclass(frozen=True)
class ViewPipeline:
    dag_id: str
    folder: Path
    run_id: str
    fix: str


@pytest.fixture(scope="module")
def view_pipeline(airflow_server: AirflowServer, session_client: AirflowClient) -> Iterator[ViewPipeline]:
    """A pipeline applied by an Airflow run (two units APPLIED, one FAILED), then one unit edited: drift."""
    files = {
        "pipeline.yaml": pipeline_yaml(extra="description: Items table, seed rows and a broken backfill\n"),
        "01_schema/0001_create_items.yaml": sql_unit(
            "create-items", "CREATE TABLE e2e_view_items (id INTEGER, name TEXT)", "DROP TABLE e2e_view_items"
        ),
        "01_schema/0002_seed_items.yaml": sql_unit(
            "seed-items", "INSERT INTO e2e_view_items VALUES (1, 'a')", "DELETE FROM e2e_view_items WHERE id = 1"
        ),
        "02_backfill/0003_backfill_prices.yaml": sql_unit(
            "backfill-prices", "UPDATE no_such_prices SET total = 0", "SELECT 1"
        ),
    }
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FLAMINGOCK_HOME", str(airflow_server.flamingock_home))
        dag_id, folder = deploy(airflow_server, session_client, "e2e_view", files)
        run_id, state = session_client.run_pipeline(dag_id, {"action": "apply", "undo_to": None})
        assert state == "failed", session_client.task_states(dag_id, run_id)
        seed = folder / "01_schema" / "0002_seed_items.yaml"
        seed.write_text(seed.read_text() + "description: edited after it was applied\n")
        fix = "flamingock fix changes/e2e_view seed-items --as applied --accept-checksum"  # relative to dags/
        store = SqliteStore(embedded_store_path())
        held = store.acquire("e2e_view", HOLDER, 900)
        assert held is not None
        try:
            yield ViewPipeline(dag_id, folder, run_id, fix)
        finally:
            store.release("e2e_view", HOLDER, held.token)
            store.close()


def browser_api() -> Any:
    """Playwright's sync API over Debian's chromium; the test is skipped when either is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (scripts/system_deps.sh) to run the browser test")
    return pytest.importorskip("playwright.sync_api", reason="the `playwright` package is not installed")


def test_the_plugin_is_registered_with_a_navigation_entry(airflow: AirflowClient) -> None:
    plugins = {p["name"]: p for p in airflow.get("/api/v2/plugins")["plugins"]}
    assert plugins["flamingock"]["fastapi_apps"][0]["url_prefix"] == "/flamingock"
    view = plugins["flamingock"]["external_views"][0]
    assert (view["name"], view["url_route"], view["destination"]) == ("Flamingock", "flamingock", "nav")
    assert airflow.get("/api/v2/plugins/importErrors")["total_entries"] == 0


@pytest.mark.parametrize("path", ["/flamingock/", "/flamingock/api/pipelines"])
def test_the_view_needs_airflow_auth(airflow_server: AirflowServer, airflow: AirflowClient, path: str) -> None:
    url = airflow_server.url + path
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer not-a-token"}).status_code == 403
    assert httpx.get(url, cookies={"_token": "not-a-token"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": f"Bearer {airflow.token}"}).status_code == 200
    page = httpx.get(url, headers={"Accept": "text/html"})
    assert page.status_code == 401 and "Sign in to Airflow" in page.text


def test_the_view_reports_states_drift_and_the_lease(
    airflow_server: AirflowServer, airflow: AirflowClient, view_pipeline: ViewPipeline
) -> None:
    data = airflow.get("/flamingock/api/pipelines")
    assert data["changes_folder"] == "changes"  # relative to the DAGs folder: never the server's path
    assert str(airflow_server.root) not in str(data)
    view = next(p for p in data["pipelines"] if p["pipeline"] == "e2e_view")
    changes = {c["id"]: (c["state"], c["action"], c["fix"]) for c in view["changes"]}
    assert changes == {
        "create-items": ("APPLIED", "skip", None),
        "seed-items": ("APPLIED", "blocked", view_pipeline.fix),
        "backfill-prices": ("FAILED", "apply", None),
    }
    assert view["lock"]["owner"] == HOLDER
    failed = [h for h in view["history"] if h["state"] == "FAILED"]
    assert failed and "no_such_prices" in failed[0]["error"] and failed[0]["run"] == view_pipeline.run_id


def test_the_view_in_headless_chromium(
    airflow_server: AirflowServer, airflow: AirflowClient, view_pipeline: ViewPipeline, tmp_path: Path
) -> None:
    sync_api = browser_api()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.goto(airflow_server.url + "/plugin/flamingock")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(airflow_server.admin_password())
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/plugin/flamingock", timeout=30_000)

            frame = page.frame_locator("iframe")
            section = frame.locator("section[data-pipeline=e2e_view]")
            section.locator("table[data-role=units]").wait_for(timeout=30_000)
            rows = section.locator("table[data-role=units] tbody tr")
            assert rows.count() == 3
            assert "APPLIED" in rows.nth(0).inner_text() and "skip" in rows.nth(0).inner_text()
            assert "blocked" in rows.nth(1).inner_text()
            assert "FAILED" in rows.nth(2).inner_text()
            header = section.locator("table[data-role=units] thead").inner_text().split("\t")
            assert header[:6] == ["STAGE", "CHANGE", "STATE", "WHEN (UTC)", "RUN", "WHO"], header
            run_link = rows.nth(0).locator("[data-role=run] a")
            assert run_link.get_attribute("href") == f"../dags/{view_pipeline.dag_id}/runs/{view_pipeline.run_id}"
            assert rows.nth(0).locator("[data-role=who]").inner_text().startswith("airflow:")
            assert rows.nth(0).locator("[data-role=note]").inner_text() == ""  # applied: nothing to say
            assert section.locator("[data-role=blocked] [data-role=fix]").inner_text() == view_pipeline.fix
            assert HOLDER in section.locator("[data-role=lease]").inner_text()
            assert "no_such_prices" in section.locator("table[data-role=history]").inner_text()
            assert section.locator("a.button").get_attribute("href") == f"../dags/{view_pipeline.dag_id}"

            summary = frame.locator("table[data-role=summary] tr[data-pipeline=e2e_view]").inner_text()
            assert summary.split("\t")[1:] == ["2", "1", "1", HOLDER], summary
            section.scroll_into_view_if_needed()
            shot = tmp_path / "flamingock_view.png"
            page.screenshot(path=str(shot))
            if os.environ.get("FLAMINGOCK_UPDATE_DOCS"):  # refresh the README's screenshot on request only
                (REPO / "docs").mkdir(exist_ok=True)
                shutil.copy(shot, REPO / "docs" / "flamingock_view.png")

            # "Plan…" opens the inline trigger form; it triggers through Airflow's REST API with the
            # browser's own session, and the run link moves Airflow's UI to the run.
            section.locator("button[data-action=plan]").click()
            form = section.locator("form[data-role=trigger-form]")
            assert form.locator("[data-role=action]").inner_text() == "plan"
            form.get_by_role("button", name="Trigger run").click()
            queued = form.locator("[data-role=result] a")
            queued.wait_for(timeout=30_000)
            queued_text = queued.inner_text()
            queued.click()
            page.wait_for_url(f"**/dags/{view_pipeline.dag_id}/runs/**", timeout=30_000)
        finally:
            browser.close()
    runs = airflow.get(f"/api/v2/dags/{view_pipeline.dag_id}/dagRuns", order_by="-run_after", limit=1)["dag_runs"]
    assert runs[0]["conf"] == {"action": "plan", "undo_to": None}
    assert queued_text == f"run {runs[0]['dag_run_id']} queued"


def test_the_overview_shows_a_broken_folder_without_hiding_the_others(tmp_path: Path, sqlite_target: Path) -> None:
    write_tree(tmp_path / "good", {"pipeline.yaml": pipeline_yaml(), "0001_a.yaml": sql_unit("a", "SELECT 1")})
    broken = sql_unit("b", "SELECT 1").replace("template: sql", "template: sql.nope")
    write_tree(tmp_path / "broken", {"pipeline.yaml": pipeline_yaml(), "0001_b.yaml": broken})
    found = {p.folder: p for p in overview(tmp_path)}
    assert [(u.id, u.state, u.action) for u in found["good"].units] == [("a", None, "apply")]
    assert found["broken"].units == () and "0001_b.yaml" in found["broken"].errors[0]
    assert found["broken"].dag_id == "flamingock_broken"


def test_the_page_escapes_what_it_shows() -> None:
    shown = PipelineOverview("x", "/x", "x", "flamingock_x", errors=("<script>alert(1)</script>",))
    html = render_page([shown], root="/dags/changes", user="<b>eve</b>")
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<b>eve</b>" not in html


GRID_UNITS = {
    "01_schema/0001_a.yaml": sql_unit(
        "grid-a", "CREATE TABLE e2e_grid_a_{mode} (x INT)", "DROP TABLE e2e_grid_a_{mode}"
    ),
    "01_schema/0002_b.yaml": sql_unit(
        "grid-b", "CREATE TABLE e2e_grid_b_{mode} (x INT)", "DROP TABLE e2e_grid_b_{mode}"
    ),
    "02_data/0003_c.yaml": sql_unit("grid-c", "CREATE TABLE e2e_grid_c_{mode} (x INT)", "DROP TABLE e2e_grid_c_{mode}"),
}
UNIT_TASKS = {
    "task_per_unit": ["schema.apply_grid-a", "schema.apply_grid-b", "data.apply_grid-c"],
    "task_per_stage": ["schema.apply", "data.apply"],
}


def grid_pipeline(server: AirflowServer, client: AirflowClient, mode: str) -> str:
    files = {path: text.replace("{mode}", mode) for path, text in GRID_UNITS.items()}
    dag_id, _ = deploy(
        server, client, f"e2e_grid_{mode}", {"pipeline.yaml": pipeline_yaml(extra=f"run_mode: {mode}\n"), **files}
    )
    return dag_id


def trigger_in_the_form(page: Any, url: str, action: str, undo_to: str | None) -> None:
    """Open the DAG's trigger form, pick ``action`` (and ``undo_to``) from their lists, trigger."""
    page.goto(url)
    page.get_by_role("button", name="Trigger").first.click()
    page.locator("#element_action").click()
    page.get_by_role("option", name=action, exact=True).click()
    if undo_to is not None:
        page.locator("#element_undo_to").click()
        page.get_by_role("option", name=undo_to, exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Trigger").click()


@pytest.mark.parametrize("mode", ["task_per_unit", "task_per_stage"])
def test_the_grid_tells_what_each_run_did_to_each_unit(
    airflow_server: AirflowServer, airflow: AirflowClient, tmp_path: Path, mode: str
) -> None:
    dag_id = grid_pipeline(airflow_server, airflow, mode)
    units = UNIT_TASKS[mode]
    apply_id, state = airflow.run_pipeline(dag_id, {"action": "apply", "undo_to": None})
    assert state == "success"
    applied = airflow.task_states(dag_id, apply_id)
    assert [applied[t] for t in units] == ["success"] * len(units)
    assert [applied[t] for t in ("lock", "plan", "complete", "release")] == ["success"] * 4
    assert {
        applied[t] for t in ("undo", "undo_stages.schema", "undo_stages.data", "schema.rollback", "data.rollback")
    } == {"skipped"}

    rerun_id, state = airflow.run_pipeline(dag_id, {"action": "apply", "undo_to": None})
    rerun = airflow.task_states(dag_id, rerun_id)
    assert state == "success" and [rerun[t] for t in units] == ["skipped"] * len(units)  # nothing to do

    plan_id, state = airflow.run_pipeline(dag_id, {"action": "plan", "undo_to": None})
    planned = airflow.task_states(dag_id, plan_id)
    assert state == "success" and [planned[t] for t in units] == ["skipped"] * len(units)
    assert (planned["plan"], planned["complete"], planned["release"]) == ("success", "success", "skipped")

    if mode == "task_per_unit":  # the form and the screenshot once; the other mode's undo goes over REST
        undo_id = undo_in_the_browser(airflow_server, airflow, dag_id, tmp_path / f"grid_undo_{mode}.png")
    else:
        undo_id, state = airflow.run_pipeline(dag_id, {"action": "undo", "undo_to": "grid-a"})
        assert state == "success"
    undone = airflow.task_states(dag_id, undo_id)
    assert (undone["undo"], undone["undo_stages.data"], undone["undo_stages.schema"]) == ("success",) * 3  # c, b
    assert [undone[t] for t in units] == ["skipped"] * len(units)
    assert (undone["complete"], undone["release"]) == ("success", "success")
    notes = {r["dag_run_id"]: r["note"] for r in runs(airflow, dag_id)}
    assert (notes[apply_id], notes[plan_id], notes[undo_id]) == ("apply", "plan", "undo to grid-a")


def undo_in_the_browser(airflow_server: AirflowServer, airflow: AirflowClient, dag_id: str, shot: Path) -> str:
    """Sign in, check the form's undo_to list, trigger an undo to grid-a from it; return the run id."""
    sync_api = browser_api()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(airflow_server.url + f"/dags/{dag_id}")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(airflow_server.admin_password())
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"**/dags/{dag_id}**", timeout=30_000)

            # The form offers only the pipeline's change ids: a typo finds no option to pick.
            page.get_by_role("button", name="Trigger").first.click()
            page.locator("#element_undo_to").click()
            offered = page.get_by_role("option").all_inner_texts()
            assert {"grid-a", "grid-b", "grid-c"} <= set(offered), offered
            page.keyboard.type("grid-x")
            assert page.get_by_role("option", name="grid-x").count() == 0
            page.keyboard.press("Escape")
            page.keyboard.press("Escape")

            trigger_in_the_form(page, airflow_server.url + f"/dags/{dag_id}", "undo", "grid-a")
            undo_id: str = wait_until(
                lambda: next(
                    (r["dag_run_id"] for r in runs(airflow, dag_id) if r["conf"].get("action") == "undo"), None
                ),
                60,
                "the undo run triggered from the form",
            )
            assert airflow.wait_for_run(dag_id, undo_id) == "success"
            page.goto(airflow_server.url + f"/dags/{dag_id}/runs/{undo_id}")
            page.get_by_text("undo to grid-a").first.wait_for(timeout=30_000)  # the run's note, in the UI
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shot))
            if os.environ.get("FLAMINGOCK_UPDATE_DOCS"):
                shutil.copy(shot, REPO / "docs" / "grid_undo.png")
        finally:
            browser.close()
    return undo_id


def runs(airflow: AirflowClient, dag_id: str) -> list[dict[str, object]]:
    return list(airflow.get(f"/api/v2/dags/{dag_id}/dagRuns", order_by="-run_after", limit=20)["dag_runs"])
