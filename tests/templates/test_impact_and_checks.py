"""``plan`` impact and ``checks:`` against real MongoDB (SecantusDB), DynamoDB and S3 (moto) and HTTP (SPEC §14)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from flamingock_provider import commands
from tests.conftest import write_tree
from tests.fixtures.http_api import HttpApi
from tests.fixtures.mongo_server import CONN_ID, MongoDatabase
from tests.fixtures.moto_server import MotoServer

MONGO = f"targets:\n  catalog: {{conn_id: {CONN_ID}}}\ndefault_target: catalog\n"
MONGO_AUDIT = f"audit: {{conn_id: {CONN_ID}}}\n" + MONGO  # check_outcome and risk through the MongoDB store
DYNAMO_AUDIT = "audit: {conn_id: aws_default, table: flamingock_audit_log}\n"
AWS = "targets:\n  lake: {conn_id: aws_default}\n  api: {conn_id: http_default}\ndefault_target: lake\n"


def unit(unit_id: str, template: str, apply: Any, **extra: Any) -> str:
    return yaml.safe_dump({"id": unit_id, "author": "tester", "template": template, "apply": apply, **extra})


def impacts(pipe: Path) -> dict[str, Any]:
    return {c["id"]: (c["risk"], c["impact"]) for c in commands.plan(pipe)["changes"]}


# -- MongoDB --------------------------------------------------------------------------------------


def test_mongo_impact_counts_documents_of_real_data(tmp_path: Path, mongo_conn: MongoDatabase) -> None:
    mongo_conn.db.events.insert_many([{"kind": "click" if n % 3 else "view", "n": n} for n in range(30)])
    pipe = write_tree(
        tmp_path / "m",
        {
            "pipeline.yaml": MONGO,
            "0001_purge.yaml": unit(
                "purge", "mongo.delete", {"collection": "events", "filter": {"kind": "view"}, "many": True}
            ),
            "0002_drop.yaml": unit("drop", "mongo.drop_collection", {"collection": "events"}),
            "0003_add.yaml": unit("add", "mongo.insert", {"collection": "events", "documents": [{"n": 99}]}),
        },
    )
    assert impacts(pipe) == {
        "purge": ("rewrite", "collection events: 10 documents match the filter"),
        "drop": ("destructive", "collection events: 30 documents"),
        "add": ("safe", None),
    }
    assert mongo_conn.db.events.count_documents({}) == 30
    rendered = {c["id"]: c["rendered"] for c in commands.plan(pipe, sql=True)["changes"]}
    assert rendered["purge"] == [{"collection": "events", "filter": {"kind": "view"}, "many": True}]
    commands.apply(pipe, until="purge")
    (undo,) = commands.undo_plan(pipe, last=1)["undo"]
    assert undo["id"] == "purge" and undo["rollback"][0]["derived"] == "mongo.delete reverses its apply"
    assert len(undo["rollback"][0]["from_audit"]["before"]) == 10  # the deleted documents it puts back


def test_mongo_check_counts_documents(tmp_path: Path, mongo_conn: MongoDatabase) -> None:
    mongo_conn.db.users.insert_many([{"email": None}, {"email": "a@x"}])
    check = [{"mongo": {"collection": "users", "filter": {"email": None}, "expect_count": 0}}]
    pipe = write_tree(
        tmp_path / "m",
        {
            "pipeline.yaml": MONGO_AUDIT,
            "0001_idx.yaml": unit(
                "idx",
                "mongo.create_index",
                {"collection": "users", "keys": {"email": 1}, "unique": True},
                checks=check,
                on_check_fail="skip",
            ),
        },
    )
    assert commands.apply(pipe)["skipped"] == ["idx"]
    (entry,) = commands.history(pipe)["entries"]
    assert entry["state"] == "CHECK_FAILED" and entry["check_outcome"]["saw"] == 1 and entry["risk"] == "safe"
    assert entry["check_outcome"]["checks"] == [{"check": "checks[0] mongo", "saw": 1, "passed": False}]
    mongo_conn.db.users.delete_many({"email": None})
    assert commands.apply(pipe)["applied"] == ["idx"]


# -- DynamoDB and S3 ------------------------------------------------------------------------------


def _table(server: MotoServer, items: int) -> Any:
    client = server.client("dynamodb")
    client.create_table(
        TableName="catalog",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(items):
        client.put_item(TableName="catalog", Item={"pk": {"S": f"k{n}"}})
    return client


def test_dynamodb_and_s3_impact_on_real_data(tmp_path: Path, moto: MotoServer) -> None:
    _table(moto, 7)
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="raw")
    for n in range(12):
        s3.put_object(Bucket="raw", Key=f"tmp/{n}", Body=b"x")
    s3.put_object(Bucket="raw", Key="conf.json", Body=b"{}" * 10)
    pipe = write_tree(
        tmp_path / "a",
        {
            "pipeline.yaml": AWS,
            "0001_put.yaml": unit(
                "put", "dynamodb.put_items", {"table": "catalog", "items": [{"pk": "k1"}, {"pk": "new"}]}
            ),
            "0002_conf.yaml": unit("conf", "s3.put_object", {"bucket": "raw", "key": "conf.json", "body": "{}"}),
            "0003_drop.yaml": unit("drop", "dynamodb.delete_table", {"table": "catalog"}),
            "0004_bucket.yaml": unit("bucket", "s3.delete_bucket", {"bucket": "raw"}),
        },
    )
    assert impacts(pipe) == {
        "put": ("rewrite", "table catalog: 1 of 2 keys hold an item"),
        "conf": ("rewrite", "s3://raw/conf.json: 20 bytes"),
        "drop": ("destructive", "table catalog: 7 items"),
        "bucket": ("destructive", "bucket raw: 13 objects"),
    }


def test_s3_impact_stops_at_the_first_listing_page(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from flamingock_provider.templates import _s3_base

    monkeypatch.setattr(_s3_base, "LIST_CAP", 10)  # 1,000 in production: one ListObjectsV2 page
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="big")
    for n in range(12):
        s3.put_object(Bucket="big", Key=f"k{n:02}", Body=b"")
    assert _s3_base.count_objects(s3, "big") == "10+ objects"
    assert _s3_base.count_objects(s3, "big", "k1") == "2 objects under k1"


def test_dynamodb_s3_and_http_checks(tmp_path: Path, moto: MotoServer, http_api: HttpApi) -> None:
    _table(moto, 1)
    moto.client("s3").create_bucket(Bucket="acme-raw")
    moto.client("s3").put_object(Bucket="acme-raw", Key="tmp/left-over", Body=b"x")
    http_api.respond("GET", "/api/health", 503)
    checks = {
        "ok-item": ([{"dynamodb": {"table": "catalog", "key": {"pk": "k0"}, "expect": "exists"}}], None),
        "no-item": ([{"dynamodb": {"table": "catalog", "key": {"pk": "zz"}, "expect": "exists"}}], "no item"),
        "empty": (
            [{"s3": {"bucket": "acme-raw", "prefix": "tmp/", "expect": "empty"}}],
            "objects under s3://acme-raw/tmp/",
        ),
        "health": ([{"http": {"endpoint": "/api/health", "expect_status": [200]}, "target": "api"}], 503),
    }
    files = {"pipeline.yaml": DYNAMO_AUDIT + AWS}  # check_outcome through the DynamoDB store
    for n, (name, (spec, _)) in enumerate(checks.items()):
        apply = {"bucket": "acme-raw", "key": f"marker-{name}", "body": "x"}
        files[f"{n + 1:04}_{name}.yaml"] = unit(name, "s3.put_object", apply, checks=spec, on_check_fail="skip")
    pipe = write_tree(tmp_path / "a", files)
    result = commands.apply(pipe)
    assert result["applied"] == ["ok-item"] and result["skipped"] == ["no-item", "empty", "health"]
    assert {e["risk"] for e in commands.history(pipe)["entries"]} == {"rewrite"}
    saw = {
        e["change_id"]: e["check_outcome"]["saw"]
        for e in commands.history(pipe)["entries"]
        if e["state"] == "CHECK_FAILED"
    }
    assert saw == {name: want for name, (_, want) in checks.items() if want is not None}
    assert ("GET", "/api/health") in http_api.calls()


# -- Kafka ----------------------------------------------------------------------------------------


def test_kafka_impact_gives_the_topic_partitions(tmp_path: Path, kafka: Any) -> None:
    kafka.create("clicks", partitions=6)
    header = "targets:\n  feeds: {conn_id: kafka_default}\ndefault_target: feeds\n"
    pipe = write_tree(
        tmp_path / "k",
        {
            "pipeline.yaml": header,
            "0001_drop.yaml": unit("drop", "kafka.delete_topic", {"topic": "clicks"}),
            "0002_gone.yaml": unit("gone", "kafka.delete_topic", {"topic": "nothing-here"}),
        },
    )
    assert impacts(pipe) == {
        "drop": ("destructive", "topic clicks: 6 partitions"),
        "gone": ("destructive", "topic nothing-here: does not exist"),
    }
    assert kafka.topics() == {"clicks": 6}  # plan changed nothing
