"""The example pipeline dags/changes/events against the real Kafka-protocol broker (Tansu).

Its Airflow run (``dag.test()``) is in tests/airflow/test_examples.py; here it runs through the commands.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider import commands
from tests.conftest import REPO
from tests.fixtures.kafka_server import KafkaServer

EVENTS = REPO / "dags" / "changes" / "events"
UNITS = [
    "create-clickstream",
    "create-orders-feed",
    "create-customer-profiles",
    "clickstream-retention",
    "dead-letter-topics",
]
AUDIT_CONN = "AIRFLOW_CONN_FLAMINGOCK_AUDIT"  # the example's shared audit store (PostgreSQL in docker-compose)
TOPICS = {"clickstream": 6, "orders.v1": 3, "customer-profiles": 3, "clickstream.dlq": 1, "orders.v1.dlq": 1}


@pytest.fixture(autouse=True)
def audit_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's ``flamingock_audit`` connection, here a SQLite file of the test."""
    monkeypatch.setenv(AUDIT_CONN, f"sqlite:///{tmp_path / 'audit.db'}")


def test_the_events_example_is_valid_and_every_unit_is_compensable() -> None:
    doc = commands.validate(EVENTS)
    assert doc["ok"] and doc["warnings"] == [], doc
    assert [c for s in doc["stages"] for c in s["changes"]] == UNITS


def test_the_events_example_applies_and_undoes_completely(kafka: KafkaServer) -> None:
    assert commands.apply(EVENTS)["applied"] == UNITS
    assert kafka.topics() == TOPICS
    clicks = kafka.config("clickstream")
    assert clicks["retention.ms"] == "259200000" and clicks["compression.type"] == "zstd"
    assert kafka.config("customer-profiles")["cleanup.policy"] == "compact"
    assert kafka.config("orders.v1.dlq")["retention.ms"] == str(14 * 86_400_000)
    assert {e["tx_strategy"] for e in commands.history(EVENTS)["entries"]} == {"NON_TX"}
    assert commands.apply(EVENTS)["skipped"] == UNITS

    assert commands.undo(EVENTS, to="create-clickstream")["rolled_back"] == list(reversed(UNITS[1:]))
    assert kafka.topics() == {"clickstream": 6}
    assert kafka.config("clickstream")["retention.ms"] == "604800000"  # the 7 days before the privacy rule
    assert commands.undo(EVENTS, last=1)["rolled_back"] == ["create-clickstream"]
    assert kafka.topics() == {}
