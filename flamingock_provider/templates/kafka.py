"""The ``kafka.*`` templates: topics and their configuration on a ``kafka`` target (Airflow's Kafka provider).

None is transactional. Each apply records what its rollback needs (the undo state), so the derived
rollback puts that back:

=======================  ==================================================================
operation                rollback
=======================  ==================================================================
create_topic             delete the topic (refused while it holds messages)
delete_topic             re-create it with its partitions, replication factor and config;
                         the messages are gone (risk destructive; ``validate`` says so)
update_topic_config      the previous values (a key that was not set is deleted again)
add_partitions           none: Kafka cannot remove partitions (not compensable)
=======================  ==================================================================

``risk()`` gives each operation its level for the risk analysis (SPEC §14).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.core.template import Template
from flamingock_provider.exceptions import ConfigurationError, TargetError
from flamingock_provider.templates._kafka_base import (
    RETENTION_KEYS,
    KafkaTemplate,
    Problems,
    Risk,
    alter_config,
    as_count,
    check_config,
    check_count,
    config_value,
    create_partitions,
    create_topic,
    delete_topic,
    describe_topic,
    message_count,
    topic_config,
)

__all__ = ["TEMPLATES"]

BROKER_DEFAULT = -1  # CreateTopics: the broker's num.partitions / default.replication.factor (KIP-464)


class CreateTopic(KafkaTemplate):
    name = "kafka.create_topic"
    apply_keys = frozenset({"topic", "partitions", "replication_factor", "config"})
    required_apply_keys = frozenset({"topic"})

    def check(self, apply: Mapping[str, Any]) -> Problems:
        return (
            check_count(apply, "partitions") + check_count(apply, "replication_factor") + check_config(apply, "config")
        )

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        session, topic = self.session(ctx), payload["topic"]
        found = describe_topic(session, topic)
        if found is not None:
            raise TargetError(
                f"Kafka topic {topic!r} already exists on {session.servers} ({found.partitions} partitions); pick "
                f"another name, or `flamingock fix` this change as applied if it is the topic you meant",
                code="TOPIC_ALREADY_EXISTS",
            )
        partitions = as_count(payload, "partitions", ctx.change.id) if "partitions" in payload else BROKER_DEFAULT
        factor = (
            as_count(payload, "replication_factor", ctx.change.id)
            if "replication_factor" in payload
            else BROKER_DEFAULT
        )
        config = {str(k): config_value(v) for k, v in (payload.get("config") or {}).items()}
        create_topic(session, topic, partitions, factor, config)
        return {"topic": topic, "created": True}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        session, topic = self.session(ctx), payload["topic"]
        if not isinstance(undo_state, Mapping):  # the apply did not create it (e.g. it existed): keep it
            ctx.log.warning("change %s: no topic recorded as created; nothing to delete", ctx.change.id)
            return
        found = describe_topic(session, topic)
        if found is None:
            return  # already gone
        held = message_count(session, topic, found.partitions)
        if held > 0:
            raise TargetError(
                f"Kafka topic {topic!r} holds {held:,} messages written since this change created it; deleting it "
                f"would lose them: move or drop them (or delete the topic by hand), then run the rollback again or "
                f"`flamingock fix` the change as rolled-back"
            )
        delete_topic(session, topic)

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> Risk:
        return [("safe", f"creates topic {apply.get('topic')!r}")]


class DeleteTopic(KafkaTemplate):
    name = "kafka.delete_topic"
    apply_keys = frozenset({"topic"})
    required_apply_keys = frozenset({"topic"})

    def warnings(self, apply: Mapping[str, Any]) -> list[str]:
        return [
            f"kafka.delete_topic: the messages of topic {apply.get('topic')!r} are not restorable; a rollback "
            f"re-creates the topic empty, with its partitions and config"
        ]

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        session, topic = self.session(ctx), payload["topic"]
        found = self.existing(session, topic)
        saved = {
            "topic": topic,
            "partitions": found.partitions,
            "replication_factor": found.replication_factor,
            "config": topic_config(session, topic),
        }
        delete_topic(session, topic)
        return saved

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        session, topic = self.session(ctx), payload["topic"]
        if describe_topic(session, topic) is not None:
            return  # the delete never happened (or the topic is back)
        if not isinstance(undo_state, Mapping):
            raise TargetError(
                f"change {ctx.change.id!r}: Kafka topic {topic!r} is not there and its apply recorded nothing (the "
                f"topic never existed, or the delete ran and its answer was lost); if it should exist, re-create it "
                f"by hand; then `flamingock fix` the change as rolled-back"
            )
        config = {str(k): str(v) for k, v in undo_state.get("config", {}).items()}
        create_topic(session, topic, int(undo_state["partitions"]), int(undo_state["replication_factor"]), config)

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> Risk:
        return [
            (
                "destructive",
                f"deletes topic {apply.get('topic')!r}: its messages are not restorable (a rollback re-creates it "
                f"empty)",
            )
        ]


class UpdateTopicConfig(KafkaTemplate):
    name = "kafka.update_topic_config"
    apply_keys = frozenset({"topic", "set", "delete"})
    required_apply_keys = frozenset({"topic"})

    def check(self, apply: Mapping[str, Any]) -> Problems:
        problems = check_config(apply, "set")
        delete = apply.get("delete", [])
        if not (isinstance(delete, list) and all(isinstance(k, str) and k for k in delete)):
            problems.append(f"field 'apply.delete': expected a list of config names, got {delete!r}")
            delete = []
        set_ = apply.get("set", {})
        if isinstance(set_, Mapping):
            if not set_ and not delete:
                problems.append("field 'apply': give 'set' (config: value) or 'delete' (config names), or both")
            both = sorted(set(set_) & set(delete))
            if both:
                problems.append(f"field 'apply.delete': {', '.join(both)} also in 'set'; keep each name in one of them")
        return problems

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        session, topic = self.session(ctx), payload["topic"]
        set_ = {str(k): config_value(v) for k, v in (payload.get("set") or {}).items()}
        delete = [str(k) for k in payload.get("delete") or []]
        self.existing(session, topic)
        current = topic_config(session, topic)
        previous = {key: current.get(key) for key in [*set_, *delete]}
        alter_config(session, topic, set_, delete)
        return {"topic": topic, "previous": previous}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        session, topic = self.session(ctx), payload["topic"]
        if not isinstance(undo_state, Mapping):  # one IncrementalAlterConfigs request: it failed whole
            ctx.log.warning("change %s: no previous config recorded; nothing to restore", ctx.change.id)
            return
        previous: Mapping[str, str | None] = undo_state.get("previous", {})
        self.existing(session, topic)
        restore = {k: v for k, v in previous.items() if v is not None}
        alter_config(session, topic, restore, [k for k, v in previous.items() if v is None])

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> Risk:
        topic, found = apply.get("topic"), []
        set_ = apply.get("set")
        for key, value in set_.items() if isinstance(set_, Mapping) else ():
            if key in RETENTION_KEYS and config_value(value) != "-1":  # -1: keep forever
                found.append(("rewrite", f"{key}={config_value(value)} on topic {topic!r} {_retention_why(key)}"))
        delete = apply.get("delete")
        for key in delete if isinstance(delete, list) else ():
            if key in RETENTION_KEYS:
                found.append(
                    (
                        "rewrite",
                        f"deleting {key} on topic {topic!r} falls back to the broker default, which "
                        f"may keep messages for less time",
                    )
                )
        return found or [("safe", f"changes config of topic {topic!r} without touching retention")]


def _retention_why(key: str) -> str:
    if key == "cleanup.policy":
        return "changes how old messages are removed (compaction keeps only the latest per key)"
    return "may shorten retention: messages past the new limit are deleted"


class AddPartitions(KafkaTemplate):
    name = "kafka.add_partitions"
    apply_keys = frozenset({"topic", "partitions"})
    required_apply_keys = frozenset({"topic", "partitions"})
    rollback_note = "cannot be rolled back (Kafka cannot remove partitions)"
    no_rollback_hint = "Kafka cannot remove partitions"

    def check(self, apply: Mapping[str, Any]) -> Problems:
        return check_count(apply, "partitions")

    def derives_rollback(self, apply: Mapping[str, Any]) -> bool:
        return False

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        session, topic = self.session(ctx), payload["topic"]
        total = as_count(payload, "partitions", ctx.change.id)
        found = self.existing(session, topic)
        if total < found.partitions:
            raise TargetError(
                f"Kafka topic {topic!r} has {found.partitions} partitions, more than the {total} asked; Kafka cannot "
                f"remove partitions: give a total of at least {found.partitions}",
                code="INVALID_PARTITIONS",
            )
        if total == found.partitions:  # e.g. a retry after a run that grew it and died before its audit entry
            ctx.log.info("change %s: topic %s already has %d partitions", ctx.change.id, topic, total)
        else:
            create_partitions(session, topic, total)
        return {"topic": topic, "from": found.partitions, "to": total}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        raise ConfigurationError(
            f"change {ctx.change.id!r}: Kafka cannot remove the partitions of topic {payload.get('topic')!r}; "
            f"re-create the topic by hand if you must, then `flamingock fix` the change"
        )

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> Risk:
        return [
            (
                "rewrite",
                f"grows topic {apply.get('topic')!r} to {apply.get('partitions')} partitions: the key→partition "
                f"mapping changes (a key's new messages may land in another partition than its older ones), and "
                f"Kafka cannot remove partitions",
            )
        ]


TEMPLATES: dict[str, Template] = {
    "create_topic": CreateTopic(),
    "delete_topic": DeleteTopic(),
    "update_topic_config": UpdateTopicConfig(),
    "add_partitions": AddPartitions(),
}
