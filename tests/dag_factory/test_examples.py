"""The example pipelines on MongoDB (catalog), AWS + HTTP (lake) and Kafka (events) run through real Airflow.

The fleet example (tenants: three SQLite databases) rolls out through the CLI.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from flamingock_provider import commands
from flamingock_provider.cli.main import main
from tests.conftest import REPO
from tests.fixtures.airflow_dags import load_dag, run_dag
from tests.fixtures.http_api import HttpApi
from tests.fixtures.kafka_server import KafkaServer
from tests.fixtures.mongo_server import MongoDatabase
from tests.fixtures.moto_server import MotoServer


def install_example(changes: Path, name: str) -> Path:
    """Copy ``dags/changes/<name>`` into the session's DAGs folder, as a user drops a folder in."""
    return Path(shutil.copytree(REPO / "dags" / "changes" / name, changes / name))


def assert_all_applied(run_tasks: dict[str, str | None], folder: Path) -> None:
    units = [t for t in run_tasks if ".apply_" in t]
    assert units and all(run_tasks[t] == "success" for t in units), run_tasks
    assert {c["state"] for c in commands.status(folder)["changes"]} == {"APPLIED"}


@pytest.mark.slow
def test_catalog_example_runs_through_airflow(changes: Path, mongo_conn: MongoDatabase) -> None:
    folder = install_example(changes, "catalog")
    run = run_dag(load_dag("flamingock_catalog"))
    assert run.state == "success", run.tasks
    assert_all_applied(run.tasks, folder)
    assert mongo_conn.db.products.count_documents({}) == 4
    again = run_dag(load_dag("flamingock_catalog"))
    assert again.state == "success" and all(
        state == "skipped" for task, state in again.tasks.items() if ".apply_" in task
    )


@pytest.mark.slow
def test_lake_example_runs_through_airflow(changes: Path, moto: MotoServer, http_api: HttpApi) -> None:
    folder = install_example(changes, "lake")
    run = run_dag(load_dag("flamingock_lake"))
    assert run.state == "success", run.tasks
    assert_all_applied(run.tasks, folder)
    assert moto.client("dynamodb").scan(TableName="lake_datasets")["Count"] > 0
    assert moto.client("s3").head_bucket(Bucket="acme-lake-raw")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert ("POST", "/api/v1/sources") in http_api.calls()


def test_events_example_runs_through_airflow(
    changes: Path, kafka: KafkaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_FLAMINGOCK_AUDIT", f"sqlite:///{tmp_path / 'audit.db'}")  # its shared store
    folder = install_example(changes, "events")
    run = run_dag(load_dag("flamingock_events"))
    assert run.state == "success", run.tasks
    assert_all_applied(run.tasks, folder)
    assert kafka.topics()["clickstream"] == 6 and "orders.v1.dlq" in kafka.topics()
    assert kafka.config("clickstream")["retention.ms"] == "259200000"


def test_tenants_fleet_example_validates_and_rolls_out_to_every_tenant_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = REPO / "dags" / "changes" / "tenants"
    monkeypatch.setenv("AIRFLOW_CONN_FLAMINGOCK_AUDIT", f"sqlite:///{tmp_path / 'audit.db'}")
    tenants = ("acme", "globex", "initech")
    for name in tenants:
        monkeypatch.setenv(f"AIRFLOW_CONN_TENANT_{name.upper()}_DB", f"sqlite:///{tmp_path / (name + '.db')}")
    report = commands.validate(folder)
    assert report["ok"] and report["warnings"] == [], report

    assert main(["apply", str(folder), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["waves"] == [["acme"], ["globex", "initech"]] and doc["halted_after_wave"] is None
    assert {r["member"]: r["applied"] for r in doc["members"]} == {
        name: ["create-accounts", "accounts-by-email-index", "backfill-free-plan"] for name in tenants
    }
    for name in tenants:
        with sqlite3.connect(tmp_path / f"{name}.db") as conn:
            indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'accounts'")}
        assert {"accounts", "ix_accounts_email"} <= indexes

    assert main(["status", str(folder), "--json"]) == 0
    matrix = json.loads(capsys.readouterr().out)
    cells = {(r["member"], c["id"]): (c["state"], c["action"]) for r in matrix["members"] for c in r["changes"]}
    assert len(cells) == 9 and set(cells.values()) == {("APPLIED", "skip")}
    assert all(r["lock"] is None for r in matrix["members"])
