"""An approval answered in Airflow's own UI (headless Chromium): the required-actions page shows the plan."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from flamingock_provider import commands
from tests.conftest import REPO, sql_unit
from tests.e2e.harness import AirflowClient, AirflowServer
from tests.e2e.pipelines import pipeline_yaml
from tests.e2e.test_approval import wait_for_question
from tests.e2e.test_runs import deploy
from tests.e2e.test_view import CHROMIUM, CHROMIUM_ARGS


def test_approve_through_the_required_actions_page(
    airflow_server: AirflowServer, airflow: AirflowClient, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (scripts/system_deps.sh) to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the `playwright` package is not installed")
    files = {
        "pipeline.yaml": pipeline_yaml(poke=0.5, extra="approval: {required: destructive}\n"),
        "0001_orders.yaml": sql_unit(
            "create-orders", "CREATE TABLE e2e_ui_orders (id INTEGER, total_cents INTEGER)", "DROP TABLE e2e_ui_orders"
        ),
        "0002_drop_cents.yaml": sql_unit(
            "drop-total-cents",
            "ALTER TABLE e2e_ui_orders DROP COLUMN total_cents",
            "ALTER TABLE e2e_ui_orders ADD COLUMN total_cents INTEGER",
        ),
    }
    dag_id, folder = deploy(airflow_server, airflow, "e2e_approve_ui", files)
    run_id = airflow.trigger(dag_id, {"action": "apply", "undo_to": None})
    wait_for_question(airflow, dag_id, run_id)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.goto(f"{airflow_server.url}/dags/{dag_id}/runs/{run_id}/tasks/approve/required_actions")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(airflow_server.admin_password())
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("DROP COLUMN total_cents").first.wait_for(timeout=60_000)  # the plan, as the body
            page.get_by_text("drop-total-cents").first.wait_for(timeout=10_000)
            page.screenshot(path=str(tmp_path / "asked.png"), full_page=True)  # kept for a failure's post-mortem
            page.locator("#element_note").fill("CHG-51: cents moved to order_lines")  # the form's field of param note
            shot = tmp_path / "approval.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("FLAMINGOCK_UPDATE_DOCS"):  # refresh the README's screenshot on request only
                shutil.copy(shot, REPO / "docs" / "approval.png")
            page.get_by_role("button", name="Approve").click()
        finally:
            browser.close()
    assert airflow.wait_for_run(dag_id, run_id) == "success", airflow.task_states(dag_id, run_id)
    entries = commands.history(folder)["entries"]
    assert len(entries) == 4
    assert {(e["approved_by"], e["approval_note"]) for e in entries} == {
        ("admin", "CHG-51: cents moved to order_lines")
    }
