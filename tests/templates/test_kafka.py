"""The kafka.* templates through commands.apply / undo and the CLI, asserting the real broker's state (Tansu).

Tansu refuses CreatePartitions: ``kafka.add_partitions`` is tested for that refusal and for what it can
do without the API (a total it already has, a total below it).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flamingock_provider import commands
from flamingock_provider.core.template import get_template
from tests.conftest import VENV_BIN, write_tree
from tests.fixtures.kafka_server import KafkaServer

HEADER = "targets:\n  feeds: {conn_id: kafka_default}\nlock: {poke_interval_seconds: 0.05, wait_timeout_seconds: 60}\n"
WEEK_MS, DAY_MS = str(7 * 86_400_000), str(86_400_000)


def unit(unit_id: str, op: str, apply: Any, **extra: Any) -> str:
    doc: dict[str, Any] = {"id": unit_id, "author": "tester", "template": f"kafka.{op}", "apply": apply, **extra}
    return yaml.safe_dump(doc, sort_keys=False)


def make(tmp_path: Path, files: dict[str, str], extra: str = "", name: str = "p") -> Path:
    return write_tree(tmp_path / name, {"pipeline.yaml": HEADER + extra, **files})


def states(pipe: Path) -> dict[str, str | None]:
    return {c["id"]: c["state"] for c in commands.status(pipe)["changes"]}


# -- parse time -------------------------------------------------------------------------------


def errors_of(tmp_path: Path, apply: Any, op: str = "create_topic", **extra: Any) -> list[str]:
    doc = commands.validate(make(tmp_path, {"0001_t.yaml": unit("t", op, apply, **extra)}))
    assert not doc["ok"]
    return [e["message"] for e in doc["errors"]]


def test_unknown_keys_are_errors_with_a_did_you_mean(tmp_path: Path) -> None:
    (message,) = errors_of(tmp_path, {"topic": "clicks", "partitons": 3})
    assert "field 'apply.partitons': unknown key (did you mean 'partitions'?)" in message
    messages = errors_of(tmp_path, {"topic": "clicks", "sett": {"retention.ms": 1}}, op="update_topic_config")
    assert any("field 'apply.sett': unknown key (did you mean 'set'?)" in m for m in messages)


@pytest.mark.parametrize(
    ("op", "apply", "expected"),
    [
        ("create_topic", {"topic": "bad topic!"}, "is not a Kafka topic name"),
        ("create_topic", {"topic": "t", "partitions": 0}, "'apply.partitions': expected a whole number of at least 1"),
        ("create_topic", {"topic": "t", "replication_factor": True}, "'apply.replication_factor': expected a whole"),
        ("create_topic", {"topic": "t", "config": {"retention.ms": [1]}}, "'apply.config.retention.ms': expected a"),
        ("create_topic", {"partitions": 1}, "field 'apply.topic': required"),
        ("update_topic_config", {"topic": "t"}, "give 'set' (config: value) or 'delete'"),
        ("update_topic_config", {"topic": "t", "set": {"a": 1}, "delete": ["a"]}, "a also in 'set'"),
        ("update_topic_config", {"topic": "t", "delete": "retention.ms"}, "expected a list of config names"),
        ("update_topic_config", {"topic": "t", "set": "{{ params.cfg }}"}, "'apply.set': expected a mapping"),
        ("add_partitions", {"topic": "t"}, "field 'apply.partitions': required"),
    ],
)
def test_bad_payloads_are_errors_naming_the_field(tmp_path: Path, op: str, apply: Any, expected: str) -> None:
    assert any(expected in m for m in errors_of(tmp_path, apply, op=op)), errors_of(tmp_path, apply, op=op)


def test_an_explicit_rollback_is_refused(tmp_path: Path) -> None:
    (message,) = errors_of(tmp_path, {"topic": "t"}, rollback={"topic": "t"})
    assert "derives its rollback from what apply recorded; remove it" in message
    (message,) = errors_of(tmp_path, {"topic": "t", "partitions": 4}, op="add_partitions", rollback={"topic": "t"})
    assert "Kafka cannot remove partitions" in message


def test_validate_warns_about_add_partitions_and_delete_topic(tmp_path: Path) -> None:
    files = {
        "0001_grow.yaml": unit("grow", "add_partitions", {"topic": "clicks", "partitions": 6}),
        "0002_drop.yaml": unit("drop", "delete_topic", {"topic": "legacy"}),
        "0003_new.yaml": unit("new", "create_topic", {"topic": "fresh", "partitions": 2}),
    }
    doc = commands.validate(make(tmp_path, files))
    assert doc["ok"], doc
    warnings = {w["file"]: w["message"] for w in doc["warnings"]}
    assert warnings["0001_grow.yaml"] == (
        "not compensable: a failure needs manual intervention; Kafka cannot remove partitions"
    )
    assert "messages of topic 'legacy' are not restorable" in warnings["0002_drop.yaml"]
    assert "0003_new.yaml" not in warnings


def test_risk_of_each_operation() -> None:
    def levels(op: str, apply: dict[str, Any]) -> list[str]:
        return [level for level, _ in get_template(f"kafka.{op}").risk(apply)]  # type: ignore[attr-defined]

    assert levels("create_topic", {"topic": "t"}) == ["safe"]
    (level, reason), *_ = get_template("kafka.delete_topic").risk({"topic": "t"})  # type: ignore[attr-defined]
    assert level == "destructive" and "messages are not restorable" in reason
    assert levels("update_topic_config", {"topic": "t", "set": {"retention.ms": 3600000}}) == ["rewrite"]
    assert levels("update_topic_config", {"topic": "t", "set": {"retention.ms": -1}}) == ["safe"]
    assert levels("update_topic_config", {"topic": "t", "set": {"max.message.bytes": 2000000}}) == ["safe"]
    assert levels("update_topic_config", {"topic": "t", "delete": ["retention.bytes", "segment.ms"]}) == ["rewrite"]
    assert levels("update_topic_config", {"topic": "t", "set": {"cleanup.policy": "compact"}}) == ["rewrite"]
    assert levels("add_partitions", {"topic": "t", "partitions": 6}) == ["rewrite"]


# -- create_topic ---------------------------------------------------------------------------


def test_create_topic_and_its_rollback(tmp_path: Path, kafka: KafkaServer) -> None:
    apply = {"topic": "clicks", "partitions": 3, "replication_factor": 1, "config": {"retention.ms": WEEK_MS}}
    pipe = make(tmp_path, {"0001_clicks.yaml": unit("clicks", "create_topic", apply)})
    assert commands.apply(pipe)["applied"] == ["clicks"]
    assert kafka.topics() == {"clicks": 3}
    assert kafka.config("clicks")["retention.ms"] == WEEK_MS
    assert commands.apply(pipe)["skipped"] == ["clicks"]
    assert commands.undo(pipe, last=1)["rolled_back"] == ["clicks"]
    assert kafka.topics() == {}


def test_create_topic_with_broker_defaults_and_jinja(tmp_path: Path, kafka: KafkaServer) -> None:
    apply = {"topic": "feed_{{ params.get('env', 'dev') }}", "config": {"compression.type": "zstd"}}
    sized = {"topic": "sized", "partitions": "{{ 2 * 2 }}"}  # Jinja renders numbers as strings
    files = {
        "0001_feed.yaml": unit("feed", "create_topic", apply),
        "0002_sized.yaml": unit("sized", "create_topic", sized),
    }
    assert commands.apply(make(tmp_path, files))["applied"] == ["feed", "sized"]
    assert kafka.topics() == {"feed_dev": 3, "sized": 4}  # Tansu's default partition count is 3
    assert kafka.config("feed_dev")["compression.type"] == "zstd"


def test_create_of_an_existing_topic_is_an_error_naming_it(tmp_path: Path, kafka: KafkaServer) -> None:
    kafka.create("clicks", partitions=2)
    kafka.produce("clicks", b"keep me")
    pipe = make(tmp_path, {"0001_clicks.yaml": unit("clicks", "create_topic", {"topic": "clicks", "partitions": 2})})
    failed = commands.apply(pipe)["failed"]
    assert failed["id"] == "clicks"
    assert "Kafka topic 'clicks' already exists" in failed["error"] and "flamingock fix" in failed["error"]
    assert kafka.topics() == {"clicks": 2}  # the compensation left the existing topic alone
    assert states(pipe) == {"clicks": "ROLLED_BACK"}


def test_create_topic_rollback_refuses_a_topic_holding_messages(tmp_path: Path, kafka: KafkaServer) -> None:
    pipe = make(tmp_path, {"0001_clicks.yaml": unit("clicks", "create_topic", {"topic": "clicks"})})
    commands.apply(pipe)
    kafka.produce("clicks", b"a", b"b")
    result = commands.undo(pipe, last=1)
    assert result["failed"]["id"] == "clicks"
    assert "holds" in result["failed"]["error"] and "would lose them" in result["failed"]["error"]
    assert "clicks" in kafka.topics()
    assert states(pipe) == {"clicks": "ROLLBACK_FAILED"}


# -- delete_topic ---------------------------------------------------------------------------


def test_delete_topic_and_its_rollback_recreate_partitions_and_config(tmp_path: Path, kafka: KafkaServer) -> None:
    config = {"retention.ms": DAY_MS, "cleanup.policy": "delete", "max.message.bytes": "2000000"}
    kafka.create("legacy", partitions=3, config=config)
    pipe = make(tmp_path, {"0001_drop.yaml": unit("drop", "delete_topic", {"topic": "legacy"})})
    assert commands.apply(pipe)["applied"] == ["drop"]
    assert kafka.topics() == {}
    assert commands.undo(pipe, last=1)["rolled_back"] == ["drop"]
    assert kafka.topics() == {"legacy": 3}
    assert {k: v for k, v in kafka.config("legacy").items() if k in config} == config


def test_delete_of_a_missing_topic_fails_and_its_rollback_creates_nothing(tmp_path: Path, kafka: KafkaServer) -> None:
    pipe = make(tmp_path, {"0001_drop.yaml": unit("drop", "delete_topic", {"topic": "nowhere"})})
    failed = commands.apply(pipe)["failed"]
    assert "Kafka topic 'nowhere' does not exist" in failed["error"]
    assert kafka.topics() == {}
    assert states(pipe) == {"drop": "ROLLBACK_FAILED"}  # gone, with nothing recorded: a person decides


# -- update_topic_config --------------------------------------------------------------------


def test_update_topic_config_and_its_rollback_restore_previous_values(tmp_path: Path, kafka: KafkaServer) -> None:
    kafka.create("clicks", config={"retention.ms": WEEK_MS, "cleanup.policy": "delete"})
    apply = {
        "topic": "clicks",
        "set": {"retention.ms": DAY_MS, "max.message.bytes": 2000000},
        "delete": ["cleanup.policy"],
    }
    pipe = make(tmp_path, {"0001_cfg.yaml": unit("cfg", "update_topic_config", apply)})
    assert commands.apply(pipe)["applied"] == ["cfg"]
    after = kafka.config("clicks")
    assert after["retention.ms"] == DAY_MS and after["max.message.bytes"] == "2000000"
    assert "cleanup.policy" not in after
    commands.undo(pipe, last=1)
    restored = kafka.config("clicks")
    assert restored["retention.ms"] == WEEK_MS and restored["cleanup.policy"] == "delete"
    assert "max.message.bytes" not in restored


def test_update_config_of_a_missing_topic_fails_cleanly(tmp_path: Path, kafka: KafkaServer) -> None:
    apply = {"topic": "nowhere", "set": {"retention.ms": DAY_MS}}
    pipe = make(tmp_path, {"0001_cfg.yaml": unit("cfg", "update_topic_config", apply)})
    failed = commands.apply(pipe)["failed"]
    assert "Kafka topic 'nowhere' does not exist" in failed["error"]
    assert states(pipe) == {"cfg": "ROLLED_BACK"}  # nothing was altered, nothing to restore


# -- add_partitions -------------------------------------------------------------------------


def test_add_partitions_reports_the_brokers_refusal(tmp_path: Path, kafka: KafkaServer) -> None:
    kafka.create("clicks", partitions=2)
    pipe = make(tmp_path, {"0001_grow.yaml": unit("grow", "add_partitions", {"topic": "clicks", "partitions": 6})})
    failed = commands.apply(pipe)["failed"]
    assert failed["id"] == "grow"
    assert "refused to grow topic 'clicks' to 6 partitions: UNSUPPORTED_FEATURE" in failed["error"]
    assert "CreatePartitions" in failed["error"] and "broker's own tools" in failed["error"]
    assert kafka.topics() == {"clicks": 2}
    assert states(pipe) == {"grow": "FAILED"}  # not compensable: left for a person
    assert commands.apply(pipe)["blocked"]["id"] == "grow"


def test_add_partitions_never_shrinks_and_accepts_the_count_it_has(tmp_path: Path, kafka: KafkaServer) -> None:
    kafka.create("clicks", partitions=4)
    shrink = make(
        tmp_path, {"0001_s.yaml": unit("s", "add_partitions", {"topic": "clicks", "partitions": 2})}, name="a"
    )
    assert "Kafka cannot remove partitions" in commands.apply(shrink)["failed"]["error"]
    same = make(tmp_path, {"0001_s.yaml": unit("s", "add_partitions", {"topic": "clicks", "partitions": 4})}, name="b")
    assert commands.apply(same)["applied"] == ["s"]
    assert kafka.topics() == {"clicks": 4}
    with pytest.raises(Exception, match="has no rollback"):
        commands.undo(same, last=1)


# -- failure, compensation, undo through the CLI ----------------------------------------------


def test_a_failure_compensates_the_stage_in_reverse(tmp_path: Path, kafka: KafkaServer) -> None:
    kafka.create("orders", config={"retention.ms": WEEK_MS})
    files = {
        "01_feeds/0001_clicks.yaml": unit("clicks", "create_topic", {"topic": "clicks", "partitions": 2}),
        "01_feeds/0002_keep.yaml": unit(
            "keep", "update_topic_config", {"topic": "orders", "set": {"retention.ms": DAY_MS}}
        ),
        "01_feeds/0003_dup.yaml": unit("dup", "create_topic", {"topic": "orders"}),
    }
    pipe = make(tmp_path, files, extra="on_failure: rollback_stage\n")
    result = commands.apply(pipe)
    assert result["applied"] == ["clicks", "keep"] and result["failed"]["id"] == "dup"
    assert kafka.topics() == {"orders": 1}
    assert kafka.config("orders")["retention.ms"] == WEEK_MS
    assert states(pipe) == {"clicks": "ROLLED_BACK", "keep": "ROLLED_BACK", "dup": "ROLLED_BACK"}


def cli(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(VENV_BIN / "flamingock"), *args, "--json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow  # two CLI processes, each importing Airflow for the Kafka provider's hooks
def test_apply_and_undo_through_the_cli(tmp_path: Path, kafka: KafkaServer) -> None:
    files = {
        "0001_clicks.yaml": unit("clicks", "create_topic", {"topic": "clicks", "partitions": 3}),
        "0002_cfg.yaml": unit("cfg", "update_topic_config", {"topic": "clicks", "set": {"retention.ms": DAY_MS}}),
    }
    pipe = make(tmp_path, files)
    assert cli("apply", str(pipe))["applied"] == ["clicks", "cfg"]
    assert kafka.config("clicks")["retention.ms"] == DAY_MS
    assert cli("undo", str(pipe), "--last", "2")["rolled_back"] == ["cfg", "clicks"]
    assert kafka.topics() == {}
