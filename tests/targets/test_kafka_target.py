"""Python units on a kafka target: ``ctx.client("admin")`` / ``ctx.client("producer")`` from the connection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flamingock_provider import commands
from flamingock_provider.targets import kafka as kafka_target
from tests.conftest import write_tree
from tests.fixtures.kafka_server import KafkaServer, free_port

HEADER = "targets:\n  feeds: {conn_id: kafka_default}\nlock: {poke_interval_seconds: 0.05}\n"

SEED_UNIT = """
from confluent_kafka.admin import NewTopic

ID = "seed-feed"
AUTHOR = "tester"
TARGET = "feeds"


def apply(ctx):
    admin = ctx.client("admin")
    assert ctx.target is admin and ctx.hook.kafka_config_id == "kafka_default"
    admin.create_topics([NewTopic("feed", num_partitions=2, replication_factor=1)])["feed"].result()
    producer = ctx.client("producer")
    for n in range(3):
        producer.produce("feed", key=str(n), value=f"event {n}".encode())
    # no flush: closing the unit's session delivers what it produced


def rollback(ctx):
    ctx.client("admin").delete_topics(["feed"])["feed"].result()
"""


def python_pipeline(tmp_path: Path, body: str) -> Path:
    return write_tree(tmp_path / "p", {"pipeline.yaml": HEADER, "0001_seed.py": body})


def held_messages(kafka: KafkaServer, topic: str) -> int:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(kafka.topics()[topic])}
    return sum(f.result().offset for f in kafka.admin().list_offsets(request, request_timeout=10).values())


def test_a_python_unit_gets_the_admin_client_and_a_flushed_producer(tmp_path: Path, kafka: KafkaServer) -> None:
    pipe = python_pipeline(tmp_path, SEED_UNIT)
    assert commands.apply(pipe)["applied"] == ["seed-feed"]
    assert kafka.topics() == {"feed": 2} and held_messages(kafka, "feed") > 0
    assert commands.undo(pipe, last=1)["rolled_back"] == ["seed-feed"]
    assert kafka.topics() == {}


def test_an_unknown_client_is_a_clear_error(tmp_path: Path, kafka: KafkaServer) -> None:
    body = 'ID = "x"\nAUTHOR = "t"\nTARGET = "feeds"\n\ndef apply(ctx):\n    ctx.client("producr")\n'
    failed = commands.apply(python_pipeline(tmp_path, body))["failed"]
    assert (
        "is a Kafka connection: ctx.client('producr') is not a Kafka client (did you mean 'producer'?)"
        in (failed["error"])
    )


def test_a_connection_without_bootstrap_servers_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps({"conn_type": "kafka", "extra": {}}))
    pipe = write_tree(
        tmp_path / "p",
        {"pipeline.yaml": HEADER, "0001_t.yaml": "id: t\nauthor: a\ntemplate: kafka.create_topic\napply: {topic: t}\n"},
    )
    with pytest.raises(Exception, match=r"kafka connection 'kafka_default' has no 'bootstrap.servers' in its extra"):
        commands.apply(pipe)


def test_an_unreachable_broker_is_reported_with_the_connection_to_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("confluent_kafka")
    servers = f"127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv(
        "AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": servers}})
    )
    monkeypatch.setattr(kafka_target, "REQUEST_TIMEOUT_S", 1.0)
    pipe = write_tree(
        tmp_path / "p",
        {"pipeline.yaml": HEADER, "0001_t.yaml": "id: t\nauthor: a\ntemplate: kafka.create_topic\napply: {topic: t}\n"},
    )
    failed = commands.apply(pipe)["failed"]
    assert f"Kafka unreachable at {servers}: could not list topics" in failed["error"]
    assert "check 'bootstrap.servers' in the kafka connection's extra" in failed["error"]
