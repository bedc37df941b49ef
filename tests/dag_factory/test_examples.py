"""The example pipelines on MongoDB (catalog), AWS + HTTP (lake) and Kafka (events) run through real Airflow."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flamingock_provider import commands
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
