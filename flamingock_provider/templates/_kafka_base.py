"""What every ``kafka.*`` template shares: payload checks (parse time, no I/O), broker reads and writes, the base.

Every broker request goes through :meth:`KafkaTargetSession.call`, which translates Kafka errors once.
No confluent_kafka import at module level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.core.template import Template
from flamingock_provider.exceptions import ConfigurationError, TargetError
from flamingock_provider.targets.kafka import KafkaTargetSession, kafka_session, translate

Problems = list[str]
Risk = list[tuple[str, str]]
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
# topic configs that decide how long messages are kept: changing them may delete existing messages sooner
RETENTION_KEYS = frozenset(
    {"retention.ms", "retention.bytes", "local.retention.ms", "local.retention.bytes", "cleanup.policy"}
)


# -- payload checks (parse time, no I/O) ------------------------------------------------------


def templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_topic(payload: Mapping[str, Any]) -> Problems:
    value = payload.get("topic")
    if "topic" not in payload or templated(value):
        return []
    if not isinstance(value, str) or not TOPIC_NAME.fullmatch(value) or value in (".", ".."):
        return [f"field 'apply.topic': {value!r} is not a Kafka topic name; use 1-249 letters, digits, '.', '_', '-'"]
    return []


def check_count(payload: Mapping[str, Any], key: str) -> Problems:
    value = payload.get(key)
    if key not in payload or templated(value):
        return []
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return [f"field 'apply.{key}': expected a whole number of at least 1, got {value!r}"]
    return []


def check_config(payload: Mapping[str, Any], key: str) -> Problems:
    value = payload.get(key)
    if key not in payload:
        return []
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k for k in value):  # Jinja: in the values
        return [f"field 'apply.{key}': expected a mapping of config names to values, got {value!r}"]
    return [
        f"field 'apply.{key}.{name}': expected a string, number or boolean, got {item!r}"
        for name, item in value.items()
        if not isinstance(item, str | int | float | bool)
    ]


def config_value(value: Any) -> str:
    """A YAML scalar as Kafka wants it: booleans lower-case, everything a string."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def as_count(payload: Mapping[str, Any], key: str, change_id: str) -> int:
    """The rendered payload's ``key`` as an int (Jinja renders numbers as strings)."""
    value = payload[key]
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1:
        raise ConfigurationError(
            f"change {change_id!r}: 'apply.{key}' rendered to {value!r}, not a whole number of at least 1; fix it"
        )
    return number


# -- broker reads and writes -------------------------------------------------------------------


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    replication_factor: int


def describe_topic(session: KafkaTargetSession, topic: str) -> TopicInfo | None:
    """The topic's partition count and replication factor, or None when the cluster has no such topic."""
    admin = session.client("admin")
    metadata = session.call("list topics", lambda: admin.list_topics(timeout=session.timeout_s))
    found = metadata.topics.get(topic)
    if found is None or (found.error is not None and found.error.name() == "UNKNOWN_TOPIC_OR_PART"):
        return None
    if found.error is not None:  # e.g. TOPIC_AUTHORIZATION_FAILED: the metadata answer carries it per topic
        from confluent_kafka import KafkaException

        raise translate(session.servers, f"describe topic {topic!r}", KafkaException(found.error))
    replicas = [len(p.replicas) for p in found.partitions.values()]
    return TopicInfo(topic, len(found.partitions), max(replicas, default=1))


def topic_config(session: KafkaTargetSession, topic: str) -> dict[str, str]:
    """Every config entry of the topic that a create (or a rollback) should set again.

    Entries at their default are kept too: Tansu reports explicitly set configs as defaults
    (``is_default``, source DEFAULT_CONFIG), so dropping defaults would drop what was set. Left out:
    values the topic inherits from the broker's own settings (set again, they would stop following
    the broker), read-only entries, and sensitive ones (described without a value).
    """
    from confluent_kafka.admin import ConfigResource, ConfigSource

    inherited = {
        ConfigSource.STATIC_BROKER_CONFIG.value,
        ConfigSource.DYNAMIC_BROKER_CONFIG.value,
        ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value,
    }
    admin = session.client("admin")
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    doing = f"describe the config of topic {topic!r}"
    described = session.call(
        doing, lambda: admin.describe_configs([resource], request_timeout=session.timeout_s)[resource].result()
    )
    return {
        name: str(entry.value)
        for name, entry in sorted(described.items())
        if entry.value is not None
        and not entry.is_read_only
        and not entry.is_sensitive
        and int(getattr(entry.source, "value", entry.source)) not in inherited
    }


def create_topic(
    session: KafkaTargetSession, topic: str, partitions: int, replication_factor: int, config: Mapping[str, str]
) -> None:
    from confluent_kafka.admin import NewTopic

    admin = session.client("admin")
    new = NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor, config=dict(config))
    session.call(
        f"create topic {topic!r}",
        lambda: admin.create_topics([new], request_timeout=session.timeout_s)[topic].result(),
    )


def delete_topic(session: KafkaTargetSession, topic: str) -> None:
    admin = session.client("admin")
    session.call(
        f"delete topic {topic!r}",
        lambda: admin.delete_topics([topic], request_timeout=session.timeout_s)[topic].result(),
    )


def alter_config(session: KafkaTargetSession, topic: str, set_: Mapping[str, str], delete: list[str]) -> None:
    """One IncrementalAlterConfigs request: SET ``set_``, DELETE ``delete`` (back to the broker default)."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    ops = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in set_.items()]
    ops += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in delete]
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=ops)
    admin = session.client("admin")
    session.call(
        f"alter the config of topic {topic!r}",
        lambda: admin.incremental_alter_configs([resource], request_timeout=session.timeout_s)[resource].result(),
    )


def create_partitions(session: KafkaTargetSession, topic: str, total: int) -> None:
    from confluent_kafka.admin import NewPartitions

    admin = session.client("admin")
    session.call(
        f"grow topic {topic!r} to {total} partitions",
        lambda: admin.create_partitions([NewPartitions(topic, total)], request_timeout=session.timeout_s)[
            topic
        ].result(),
    )


def message_count(session: KafkaTargetSession, topic: str, partitions: int) -> int:
    """How many messages the topic holds (latest minus earliest offset, summed over its partitions)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    admin = session.client("admin")

    def offsets(spec: Any) -> int:
        request = {TopicPartition(topic, p): spec for p in range(partitions)}
        replies = admin.list_offsets(request, request_timeout=session.timeout_s)
        return sum(max(f.result().offset, 0) for f in replies.values())

    doing = f"read the offsets of topic {topic!r}"
    return session.call(doing, lambda: offsets(OffsetSpec.latest())) - session.call(
        doing, lambda: offsets(OffsetSpec.earliest())
    )


# -- the template base ----------------------------------------------------------------------------


class KafkaTemplate(Template):
    """Common parts: a kafka target, a ``topic``, rollbacks derived from what apply recorded, a risk level."""

    target_kind = "kafka"
    rollback_note: ClassVar[str] = "derives its rollback from what apply recorded"

    def validate(self, apply: Mapping[str, Any], rollback: Mapping[str, Any] | None) -> list[str]:
        problems = super().validate(apply, rollback) + check_topic(apply)
        if rollback is not None:
            problems.append(f"field 'rollback': {self.name!r} {self.rollback_note}; remove it")
        return problems + self.check(apply)

    def check(self, apply: Mapping[str, Any]) -> Problems:
        return []

    def derives_rollback(self, apply: Mapping[str, Any]) -> bool:
        return True

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> Risk:
        """The operation's risk as ``(level, reason)`` pairs; level: safe|rewrite|locking|unknown|destructive."""
        return [("unknown", f"{self.name} on topic {apply.get('topic')!r}")]

    def session(self, ctx: ChangeContext) -> KafkaTargetSession:
        return kafka_session(ctx, self.name)

    def impact(self, ctx: ChangeContext, payload: Mapping[str, Any], *, timeout: float) -> str | None:
        """``topic x: N partitions`` (SPEC §14), from one metadata request."""
        topic = str(payload["topic"])
        found = describe_topic(self.session(ctx), topic)
        if found is None:
            return f"topic {topic}: does not exist"
        return f"topic {topic}: {found.partitions:,} partition{'s' if found.partitions != 1 else ''}"

    def existing(self, session: KafkaTargetSession, topic: str) -> TopicInfo:
        found = describe_topic(session, topic)
        if found is None:
            raise TargetError(
                f"Kafka topic {topic!r} does not exist on {session.servers}; check the name, or create it first "
                f"(kafka.create_topic)",
                code="UNKNOWN_TOPIC_OR_PART",
            )
        return found
