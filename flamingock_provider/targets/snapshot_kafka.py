"""Snapshot a Kafka target for a rollback rehearsal: its topics, partition counts and topic configs.

Internal topics (``__consumer_offsets``...) are left out. The configs are the ones a create or a
rollback sets again (:func:`templates._kafka_base.topic_config`), so broker-inherited values do not
show up as differences.
"""

from __future__ import annotations

from typing import Any, cast

from flamingock_provider.core.rehearsal import Facts
from flamingock_provider.core.targets import TargetSession


def snapshot_kafka(session: TargetSession) -> Facts:
    """Return ``{"topic t": {"partitions": n, "config retention.ms": "..."}}``."""
    from flamingock_provider.targets.kafka import KafkaTargetSession
    from flamingock_provider.templates._kafka_base import describe_topic, topic_config

    kafka = cast(KafkaTargetSession, session)
    admin = kafka.client("admin")
    metadata = kafka.call("list topics", lambda: admin.list_topics(timeout=kafka.timeout_s))
    facts: dict[str, dict[str, Any]] = {}
    for topic in sorted(metadata.topics):
        if topic.startswith("__"):
            continue
        info = describe_topic(kafka, topic)
        if info is None:
            continue
        found: dict[str, Any] = {"partitions": info.partitions}
        found.update({f"config {key}": value for key, value in topic_config(kafka, topic).items()})
        facts[f"topic {topic}"] = found
    return facts
