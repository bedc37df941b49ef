"""The s3.* templates through commands.apply / commands.undo, asserting the buckets' real state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from flamingock_provider.templates.s3 import MAX_CAPTURED_BYTES
from tests.fixtures.aws_pipelines import pipeline, unit
from tests.fixtures.moto_server import MotoServer

BUCKET = "lake-raw"
RULES = [{"ID": "expire-tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 7}}]


def make(tmp_path: Path, files: dict[str, str]) -> Path:
    return pipeline(tmp_path / "p", files)


def s3_unit(unit_id: str, op: str, **apply: Any) -> str:
    return unit(unit_id, f"s3.{op}", {"bucket": BUCKET, **apply})


@pytest.fixture
def s3(moto: MotoServer) -> Any:
    client = moto.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def body(s3: Any, key: str) -> tuple[bytes, str, dict[str, str]]:
    got = s3.get_object(Bucket=BUCKET, Key=key)
    return got["Body"].read(), got["ContentType"], got.get("Metadata", {})


def keys(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_create_bucket_and_its_rollback(tmp_path: Path, moto: MotoServer) -> None:
    pipe = make(tmp_path, {"0001_b.yaml": unit("b", "s3.create_bucket", {"bucket": "fresh-bucket"})})
    assert commands.apply(pipe)["applied"] == ["b"]
    client = moto.client("s3")
    assert "fresh-bucket" in [b["Name"] for b in client.list_buckets()["Buckets"]]
    commands.undo(pipe, last=1)
    assert "fresh-bucket" not in [b["Name"] for b in client.list_buckets()["Buckets"]]


def test_create_bucket_refuses_an_existing_bucket(tmp_path: Path, s3: Any) -> None:
    pipe = make(tmp_path, {"0001_b.yaml": s3_unit("b", "create_bucket")})
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "b" and "already exists" in result["failed"]["error"]
    assert BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]  # the compensation left it alone


def test_put_object_rollback_restores_the_previous_object_exactly(tmp_path: Path, s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="conf.json", Body=b"old", ContentType="text/plain", Metadata={"v": "1"})
    (tmp_path / "p" / "files").mkdir(parents=True)
    (tmp_path / "p" / "files" / "raw.bin").write_bytes(b"\x00\x01binary")
    pipe = make(
        tmp_path,
        {
            "0001_conf.yaml": s3_unit("conf", "put_object", key="conf.json", json={"retention": 30}),
            "0002_raw.yaml": s3_unit("raw", "put_object", key="raw.bin", file="files/raw.bin", metadata={"src": "t"}),
            "0003_txt.yaml": s3_unit("txt", "put_object", key="notes.txt", body="hello"),
        },
    )
    assert commands.apply(pipe)["applied"] == ["conf", "raw", "txt"]
    assert json.loads(body(s3, "conf.json")[0]) == {"retention": 30} and body(s3, "conf.json")[1] == "application/json"
    assert body(s3, "raw.bin") == (b"\x00\x01binary", "binary/octet-stream", {"src": "t"})
    commands.undo(pipe, to="conf")
    assert keys(s3) == ["conf.json"]
    commands.undo(pipe, last=1)
    assert body(s3, "conf.json") == (b"old", "text/plain", {"v": "1"})


def test_delete_object_and_its_rollback(tmp_path: Path, s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="a.csv", Body=b"1,2", ContentType="text/csv")
    pipe = make(tmp_path, {"0001_d.yaml": s3_unit("d", "delete_object", key="a.csv")})
    commands.apply(pipe)
    assert keys(s3) == []
    commands.undo(pipe, last=1)
    assert body(s3, "a.csv") == (b"1,2", "text/csv", {})


def test_on_a_versioned_bucket_rollbacks_go_through_versions(tmp_path: Path, s3: Any) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    before = s3.put_object(Bucket=BUCKET, Key="big.bin", Body=b"x" * (MAX_CAPTURED_BYTES + 1))["VersionId"]
    s3.put_object(Bucket=BUCKET, Key="gone.txt", Body=b"keep me")
    pipe = make(
        tmp_path,
        {
            "0001_big.yaml": s3_unit("big", "put_object", key="big.bin", body="small now"),
            "0002_gone.yaml": s3_unit("gone", "delete_object", key="gone.txt"),
        },
    )
    assert commands.apply(pipe)["failed"] is None  # over the copy cap, fine: versions keep the old object
    assert keys(s3) == ["big.bin"]
    commands.undo(pipe, to="big")
    assert body(s3, "gone.txt")[0] == b"keep me"
    commands.undo(pipe, last=1)
    head = s3.head_object(Bucket=BUCKET, Key="big.bin")
    assert head["VersionId"] == before and head["ContentLength"] == MAX_CAPTURED_BYTES + 1


def test_an_unversioned_object_over_the_copy_cap_is_refused_before_any_change(tmp_path: Path, s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="big.bin", Body=b"x" * (MAX_CAPTURED_BYTES + 1))
    pipe = make(tmp_path, {"0001_big.yaml": s3_unit("big", "put_object", key="big.bin", body="small")})
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "big"
    assert (
        "over the 262,144-byte copy" in result["failed"]["error"] and "enable versioning" in result["failed"]["error"]
    )
    assert len(body(s3, "big.bin")[0]) == MAX_CAPTURED_BYTES + 1


def test_bucket_configuration_templates_and_their_rollbacks(tmp_path: Path, s3: Any) -> None:
    s3.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "team", "Value": "old"}]})
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": f"arn:aws:s3:::{BUCKET}"}
        ],
    }
    pipe = make(
        tmp_path,
        {
            "0001_v.yaml": s3_unit("v", "put_bucket_versioning", status="Enabled"),
            "0002_l.yaml": s3_unit("l", "put_bucket_lifecycle", rules=RULES),
            "0003_p.yaml": s3_unit("p", "put_bucket_policy", policy=policy),
            "0004_t.yaml": s3_unit("t", "put_bucket_tagging", tags={"team": "lake", "cost": "42"}),
        },
    )
    assert commands.apply(pipe)["applied"] == ["v", "l", "p", "t"]
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    assert s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"][0]["ID"] == "expire-tmp"
    assert json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"][0]["Effect"] == "Deny"
    assert {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]} == {
        "team": "lake",
        "cost": "42",
    }
    assert commands.undo(pipe, to="v")["rolled_back"] == ["t", "p", "l"]
    assert s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"] == [{"Key": "team", "Value": "old"}]
    for getter in (s3.get_bucket_policy, s3.get_bucket_lifecycle_configuration):
        with pytest.raises(s3.exceptions.ClientError):
            getter(Bucket=BUCKET)
    commands.undo(pipe, last=1)
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Suspended"  # S3 cannot un-version a bucket


def test_delete_bucket_rollback_recreates_it_with_its_configuration(tmp_path: Path, s3: Any) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": RULES})
    s3.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "team", "Value": "lake"}]})
    pipe = make(tmp_path, {"0001_drop.yaml": s3_unit("drop", "delete_bucket")})
    commands.apply(pipe)
    assert BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    commands.undo(pipe, last=1)
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    assert s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"][0]["Expiration"] == {"Days": 7}
    assert s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"] == [{"Key": "team", "Value": "lake"}]


def test_create_bucket_rollback_refuses_to_drop_foreign_objects(tmp_path: Path, moto: MotoServer) -> None:
    pipe = make(tmp_path, {"0001_b.yaml": unit("b", "s3.create_bucket", {"bucket": "fresh-bucket"})})
    commands.apply(pipe)
    moto.client("s3").put_object(Bucket="fresh-bucket", Key="someone-elses.txt", Body=b"x")
    result = commands.undo(pipe, last=1)
    assert result["failed"]["id"] == "b" and "still holds objects" in result["failed"]["error"]
    assert moto.client("s3").head_object(Bucket="fresh-bucket", Key="someone-elses.txt")


@pytest.mark.parametrize(
    ("op", "apply", "message"),
    [
        ("put_object", {"key": "k"}, "exactly one of 'body'"),
        ("put_object", {"key": "k", "body": "x", "json": {}}, "exactly one of 'body'"),
        ("put_bucket_versioning", {"status": "On"}, "Enabled or Suspended"),
        ("put_bucket_lifecycle", {"rules": []}, "non-empty list"),
        ("put_bucket_tagging", {"tags": "team=lake"}, "mapping of tags"),
    ],
)
def test_payload_errors_are_reported_at_parse_time(tmp_path: Path, op: str, apply: Any, message: str) -> None:
    doc = commands.validate(make(tmp_path, {"0001_x.yaml": s3_unit("x", op, **apply)}))
    assert not doc["ok"] and message in doc["errors"][0]["message"]
