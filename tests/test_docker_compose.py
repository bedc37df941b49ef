"""docker-compose.yaml is for users (no Docker engine here): check its structure instead of running it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from flamingock_provider.core.loader import discover_pipelines, load_pipeline
from flamingock_provider.core.placement import check_audit_placement
from flamingock_provider.targets.connections import parse_env_connection

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def env_of(compose: dict[str, Any], service: str) -> dict[str, str]:
    return compose["services"][service]["environment"]


def test_every_service_is_there_with_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "mongo", "moto", "kafka", "redis", *AIRFLOW_SERVICES):
        assert name in services, name
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["mongo"]["image"] == "mongo:8"
    assert services["moto"]["image"].startswith("motoserver/moto:")
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert not any("localstack" in str(s.get("image", "")) for s in services.values())


def test_mongo_runs_as_a_replica_set_initiated_by_its_healthcheck(compose: dict[str, Any]) -> None:
    mongo = compose["services"]["mongo"]
    assert "--replSet" in mongo["command"]
    check = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in check and "mongo:27017" in check


def test_airflow_services_use_the_official_image_with_the_provider(compose: dict[str, Any]) -> None:
    dockerfile = (REPO / compose["services"]["airflow-scheduler"]["build"]["dockerfile"]).read_text()
    assert "FROM apache/airflow:3.3" in dockerfile and "pip install" in dockerfile and "[all]" in dockerfile
    commands = {compose["services"][s]["command"] for s in AIRFLOW_SERVICES}
    assert commands == {"api-server", "scheduler", "dag-processor", "triggerer"}
    for service in AIRFLOW_SERVICES:
        spec = compose["services"][service]
        assert "./dags:/opt/airflow/dags" in spec["volumes"]
        assert spec["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert spec["depends_on"]["mongo"]["condition"] == "service_healthy"
        env = env_of(compose, service)
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith("/execution/")


def test_celery_runs_as_in_airflows_official_compose_file_with_two_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    workers = [services[name] for name in ("airflow-worker-1", "airflow-worker-2")]
    for worker in workers:
        assert worker["command"] == "celery worker" and "inspect ping" in " ".join(worker["healthcheck"]["test"])
        assert worker["volumes"] == ["./dags:/opt/airflow/dags"]  # like another machine: nothing else shared
        assert worker["environment"]["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
        assert worker["environment"]["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert len({w["hostname"] for w in workers}) == 2
    assert services["flower"]["command"] == "celery flower" and services["flower"]["profiles"] == ["flower"]
    env = env_of(compose, "airflow-scheduler")
    assert env["AIRFLOW__CORE__FERNET_KEY"] and env["AIRFLOW__API_AUTH__JWT_SECRET"]  # every component alike


def test_no_example_pipeline_keeps_the_embedded_store_under_celery(compose: dict[str, Any]) -> None:
    executor = env_of(compose, "airflow-worker-1")["AIRFLOW__CORE__EXECUTOR"]
    for folder in discover_pipelines(REPO / "dags" / "changes"):
        check_audit_placement(load_pipeline(folder), executor)  # raises EmbeddedStoreError otherwise
    init = (REPO / "docker" / "postgres-init.sql").read_text()
    assert "CREATE DATABASE flamingock" in init  # the database behind flamingock_audit


def test_every_connection_the_example_pipelines_use_is_preset(compose: dict[str, Any]) -> None:
    env = env_of(compose, "airflow-scheduler")
    for folder in discover_pipelines(REPO / "dags" / "changes"):
        pipeline = load_pipeline(folder)
        conn_ids = {t.conn_id for t in pipeline.targets.values()} | {pipeline.audit.conn_id} - {None}
        for conn_id in conn_ids:
            raw = env.get(f"AIRFLOW_CONN_{conn_id.upper()}")
            assert raw, f"{folder.name}: connection {conn_id} is not preset"
            conn = parse_env_connection(conn_id, raw)
            assert conn.conn_type in {"sqlite", "postgres", "mongo", "aws", "http", "redis", "kafka"}
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert aws["extra"]["endpoint_url"] == "http://moto:5000"
    assert json.loads(env["AIRFLOW_CONN_MONGO_CATALOG"])["host"] == "mongo"
    assert json.loads(env["AIRFLOW_CONN_KAFKA_DEFAULT"])["extra"]["bootstrap.servers"] == "kafka:9092"


def test_kafka_runs_in_kraft_mode_advertised_to_the_airflow_services(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft: no ZooKeeper service
    assert "zookeeper" not in compose["services"] and not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert "localhost:9092" in " ".join(kafka["healthcheck"]["test"])
    for service in AIRFLOW_SERVICES:
        assert compose["services"][service]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_the_warehouse_example_runs_on_postgres_with_its_audit_store_there(compose: dict[str, Any]) -> None:
    env = env_of(compose, "airflow-scheduler")
    conn = parse_env_connection("warehouse_db", env["AIRFLOW_CONN_WAREHOUSE_DB"])
    assert (conn.conn_type, conn.host, conn.schema) == ("postgres", "postgres", "warehouse")
    pipeline = load_pipeline(REPO / "dags" / "changes" / "warehouse")
    assert pipeline.audit.conn_id == "warehouse_db" == pipeline.targets["warehouse"].conn_id
    init = [v for v in compose["services"]["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    [mount] = init
    script = (REPO / mount.split(":")[0]).read_text()
    assert "CREATE DATABASE warehouse" in script
