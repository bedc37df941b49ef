"""A fleet on the real standalone Airflow (SPEC §13): members from a Variable created over REST, each with
its own SQLite connection (also created over REST), applied wave by wave; a member added later."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from flamingock_provider import commands
from tests.e2e.harness import AirflowClient, AirflowServer

UNITS = {
    "0001_a.yaml": (
        "id: a\nauthor: t\ntemplate: sql\napply: {statements: 'CREATE TABLE a (x INT)'}\n"
        "rollback: {statements: 'DROP TABLE a'}\n"
    ),
    "0002_b.yaml": "id: b\nauthor: t\ntemplate: sql\napply: {statements: 'INSERT INTO a VALUES (1)'}\n",
}
PIPELINE = (
    "targets:\n  app: {conn_id: e2e_fleet_base}\nlock: {poke_interval_seconds: 0.2}\n"
    "fleet:\n  members_from: {variable: e2e_fleet_members}\n  waves: [1, rest]\n  max_parallel: 2\n"
)


def put_members(airflow: AirflowClient, tmp: Path, names: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Create the members' connections and the Variable in Airflow; the test process reads the same list."""
    for name in names:
        conn = {"connection_id": f"e2e_{name}", "conn_type": "sqlite", "host": str(tmp / f"{name}.db")}
        response = airflow.http.post("/api/v2/connections", json=conn)
        assert response.status_code in (201, 409), response.text
    members = [{"name": n, "targets": {"app": f"e2e_{n}"}} for n in names]
    body = {"key": "e2e_fleet_members", "value": json.dumps(members)}
    response = airflow.http.patch("/api/v2/variables/e2e_fleet_members", json=body)
    if response.status_code == 404:
        response = airflow.http.post("/api/v2/variables", json=body)
    assert response.status_code in (200, 201), response.text
    monkeypatch.setenv("AIRFLOW_VAR_E2E_FLEET_MEMBERS", body["value"])  # this process has its own metadata DB


def rows(tmp: Path, name: str) -> list[int]:
    with sqlite3.connect(tmp / f"{name}.db") as conn:
        return [r[0] for r in conn.execute("SELECT x FROM a")]


def test_a_fleet_rolls_out_on_a_real_airflow_and_a_member_added_later_applies_alone(
    airflow_server: AirflowServer, airflow: AirflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path.chmod(0o777)
    put_members(airflow, tmp_path, ["acme", "globex", "initech"], monkeypatch)
    folder = airflow_server.add_pipeline("e2e_fleet", {"pipeline.yaml": PIPELINE, **UNITS})
    airflow.wait_for_dag("flamingock_e2e_fleet")
    airflow.unpause("flamingock_e2e_fleet")

    run_id, state = airflow.run_pipeline("flamingock_e2e_fleet", {"action": "apply", "undo_to": None})
    tis = airflow.task_instances("flamingock_e2e_fleet", run_id)
    assert state == "success", [(t["task_id"], t["rendered_map_index"], t["state"]) for t in tis]
    locks = {t["rendered_map_index"]: t["task_id"] for t in tis if t["task_id"].endswith(".lock")}
    assert locks == {"acme": "wave_1.lock", "globex": "wave_2.lock", "initech": "wave_2.lock"}
    applies = sorted((t["task_id"], t["rendered_map_index"], t["state"]) for t in tis if ".main.apply_" in t["task_id"])
    assert applies == [
        *(("wave_1.main.apply_a", "acme", "success"), ("wave_1.main.apply_b", "acme", "success")),
        *(("wave_2.main.apply_a", n, "success") for n in ("globex", "initech")),
        *(("wave_2.main.apply_b", n, "success") for n in ("globex", "initech")),
    ]
    assert [rows(tmp_path, n) for n in ("acme", "globex", "initech")] == [[1], [1], [1]]

    put_members(airflow, tmp_path, ["acme", "globex", "initech", "umbrella"], monkeypatch)
    run_id, state = airflow.run_pipeline("flamingock_e2e_fleet", {"action": "apply", "undo_to": None})
    assert state == "success", airflow.task_states("flamingock_e2e_fleet", run_id)
    assert rows(tmp_path, "umbrella") == [1] and rows(tmp_path, "acme") == [1]
    tis = airflow.task_instances("flamingock_e2e_fleet", run_id)
    ran = {(t["task_id"], t["map_index"]): t["state"] for t in tis if ".main.apply_" in t["task_id"]}
    assert ran[("wave_2.main.apply_a", 2)] == "success"  # umbrella, the member added to the Variable
    assert [ran[("wave_1.main.apply_a", 0)], ran[("wave_2.main.apply_b", 1)]] == ["skipped", "skipped"]
    assert len(commands.history(folder, member="acme")["entries"]) == 4  # applied once, in the first run
    assert {e["member"] for e in commands.history(folder, member="umbrella")["entries"]} == {"umbrella"}
