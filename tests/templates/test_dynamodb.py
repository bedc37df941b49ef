"""The dynamodb.* templates through commands.apply / commands.undo, asserting the tables' real state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from flamingock_provider.exceptions import LeaseLostError, PipelineValidationError
from flamingock_provider.targets.aws import AwsTargetSession
from tests.conftest import REPO
from tests.fixtures.aws_pipelines import pipeline, unit
from tests.fixtures.moto_server import MotoServer

TABLE = {"table": "datasets", "partition_key": {"name": "id", "type": "S"}}


def create_table(**extra: Any) -> str:
    return unit("t", "dynamodb.create_table", {**TABLE, **extra})


def items(client: Any, table: str = "datasets") -> dict[str, dict[str, Any]]:
    return {i["id"]["S"]: i for i in client.scan(TableName=table, ConsistentRead=True)["Items"]}


def trail(pipe: Path, change: str | None = None) -> list[tuple[str, str, str]]:
    return [(e["change_id"], e["state"], e["tx_strategy"]) for e in commands.history(pipe, change)["entries"]]


def tables(moto: MotoServer) -> set[str]:
    return set(moto.client("dynamodb").list_tables()["TableNames"])


def test_create_table_with_an_index_and_its_rollback(tmp_path: Path, moto: MotoServer) -> None:
    index = {"name": "by_owner", "partition_key": {"name": "owner", "type": "S"}, "projection": "KEYS_ONLY"}
    pipe = pipeline(tmp_path / "p", {"0001_t.yaml": create_table(indexes=[index], tags={"team": "lake"})})
    assert commands.apply(pipe)["applied"] == ["t"]
    described = moto.client("dynamodb").describe_table(TableName="datasets")["Table"]
    assert described["TableStatus"] == "ACTIVE" and described["GlobalSecondaryIndexes"][0]["IndexName"] == "by_owner"
    assert trail(pipe) == [("t", "STARTED", "NON_TX"), ("t", "APPLIED", "NON_TX")]
    assert commands.undo(pipe, last=1)["rolled_back"] == ["t"]
    assert "datasets" not in tables(moto)


def test_put_items_is_tx_shared_and_its_rollback_restores_what_was_there(tmp_path: Path, moto: MotoServer) -> None:
    pipe = pipeline(
        tmp_path / "p",
        {
            "0001_t.yaml": create_table(),
            "0002_seed.yaml": unit("seed", "dynamodb.put_items", {"table": "datasets", "items": [{"id": "a", "v": 1}]}),
            "0003_more.yaml": unit(
                "more",
                "dynamodb.put_items",
                {"table": "datasets", "items": [{"id": "a", "v": 2, "tags": ["x"]}, {"id": "b", "price": 9.95}]},
            ),
        },
    )
    assert commands.apply(pipe)["applied"] == ["t", "seed", "more"]
    client = moto.client("dynamodb")
    assert items(client)["a"]["v"] == {"N": "2"} and items(client)["b"]["price"] == {"N": "9.95"}
    assert trail(pipe, "more") == [("more", "STARTED", "TX_SHARED"), ("more", "APPLIED", "TX_SHARED")]
    assert commands.undo(pipe, to="seed")["rolled_back"] == ["more"]
    assert items(client) == {"a": {"id": {"S": "a"}, "v": {"N": "1"}}}  # b deleted, a restored
    assert trail(pipe, "more")[-1] == ("more", "ROLLED_BACK", "TX_SHARED")


def test_delete_items_and_its_rollback(tmp_path: Path, moto: MotoServer) -> None:
    seed = {"table": "datasets", "items": [{"id": "a", "blob": "x"}, {"id": "b"}]}
    pipe = pipeline(
        tmp_path / "p",
        {
            "0001_t.yaml": create_table(),
            "0002_seed.yaml": unit("seed", "dynamodb.put_items", seed),
            "0003_drop.yaml": unit(
                "drop", "dynamodb.delete_items", {"table": "datasets", "keys": [{"id": "a"}, {"id": "zz"}]}
            ),
        },
    )
    commands.apply(pipe)
    client = moto.client("dynamodb")
    assert set(items(client)) == {"b"}
    commands.undo(pipe, to="seed")
    assert items(client)["a"] == {"id": {"S": "a"}, "blob": {"S": "x"}} and set(items(client)) == {"a", "b"}


def test_update_ttl_and_its_rollback(tmp_path: Path, moto: MotoServer) -> None:
    pipe = pipeline(
        tmp_path / "p",
        {
            "0001_t.yaml": create_table(),
            "0002_ttl.yaml": unit("ttl", "dynamodb.update_ttl", {"table": "datasets", "attribute": "expires_at"}),
        },
    )
    commands.apply(pipe)
    client = moto.client("dynamodb")
    ttl = client.describe_time_to_live(TableName="datasets")["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED" and ttl["AttributeName"] == "expires_at"
    commands.undo(pipe, to="t")
    assert client.describe_time_to_live(TableName="datasets")["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"


def test_update_table_billing_and_indexes_and_its_rollback(tmp_path: Path, moto: MotoServer) -> None:
    old = {"name": "by_owner", "partition_key": {"name": "owner", "type": "S"}}
    new = {"name": "by_day", "partition_key": {"name": "day", "type": "S"}, "projection": ["owner"]}
    pipe = pipeline(
        tmp_path / "p",
        {
            "0001_t.yaml": create_table(indexes=[old]),
            "0002_cap.yaml": unit(
                "cap",
                "dynamodb.update_table",
                {"table": "datasets", "billing_mode": "PROVISIONED", "read_capacity": 5, "write_capacity": 3},
            ),
            "0003_idx.yaml": unit(
                "idx", "dynamodb.update_table", {"table": "datasets", "delete_index": "by_owner", "create_index": new}
            ),
        },
    )
    assert commands.apply(pipe)["failed"] is None
    client = moto.client("dynamodb")
    described = client.describe_table(TableName="datasets")["Table"]
    assert described["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert [i["IndexName"] for i in described["GlobalSecondaryIndexes"]] == ["by_day"]
    assert commands.undo(pipe, to="t")["rolled_back"] == ["idx", "cap"]
    described = client.describe_table(TableName="datasets")["Table"]
    assert [i["IndexName"] for i in described["GlobalSecondaryIndexes"]] == ["by_owner"]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_delete_table_rollback_recreates_the_captured_schema(tmp_path: Path, moto: MotoServer) -> None:
    client = moto.client("dynamodb")
    client.create_table(
        TableName="legacy",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "ts", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "ts", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        Tags=[{"Key": "team", "Value": "lake"}],
    )
    client.update_time_to_live(TableName="legacy", TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    pipe = pipeline(tmp_path / "p", {"0001_drop.yaml": unit("drop", "dynamodb.delete_table", {"table": "legacy"})})
    commands.apply(pipe)
    assert "legacy" not in tables(moto)
    commands.undo(pipe, last=1)
    described = client.describe_table(TableName="legacy")["Table"]
    assert [(k["AttributeName"], k["KeyType"]) for k in described["KeySchema"]] == [("pk", "HASH"), ("ts", "RANGE")]
    assert client.describe_time_to_live(TableName="legacy")["TimeToLiveDescription"]["AttributeName"] == "exp"
    assert client.list_tags_of_resource(ResourceArn=described["TableArn"])["Tags"] == [{"Key": "team", "Value": "lake"}]


def test_with_the_embedded_audit_store_put_items_is_tx_separate_and_its_marker_goes_once_applied(
    tmp_path: Path, moto: MotoServer
) -> None:
    seed = unit("seed", "dynamodb.put_items", {"table": "datasets", "items": [{"id": "a"}]})
    pipe = pipeline(tmp_path / "p", {"0001_t.yaml": create_table(), "0002_seed.yaml": seed}, dynamo_audit=False)
    commands.apply(pipe)
    assert trail(pipe, "seed") == [("seed", "STARTED", "TX_SEPARATE"), ("seed", "APPLIED", "TX_SEPARATE")]
    assert moto.client("dynamodb").scan(TableName="flamingock_markers")["Items"] == []  # the table was made
    assert set(items(moto.client("dynamodb"))) == {"a"}


def test_a_failing_step_in_a_shared_transaction_leaves_no_item_and_no_started_entry(
    tmp_path: Path, moto: MotoServer
) -> None:
    steps = [
        {"apply": {"table": "datasets", "items": [{"id": "a"}]}},
        {"apply": {"table": "missing_table", "items": [{"id": "b"}]}},
    ]
    pipe = pipeline(
        tmp_path / "p", {"0001_t.yaml": create_table(), "0002_two.yaml": unit("two", "dynamodb.put_items", steps=steps)}
    )
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "two" and "missing_table" in result["failed"]["error"]
    assert items(moto.client("dynamodb")) == {}
    assert trail(pipe, "two") == [("two", "FAILED", "TX_SHARED")]  # STARTED was in the aborted transaction
    assert commands.plan(pipe)["changes"][1]["action"] == "apply"


CRASH_BEFORE_COMMIT = """
import os, sys
from flamingock_provider import commands
from flamingock_provider.targets.aws import AwsTargetSession
AwsTargetSession.commit = lambda self: os._exit(3)   # the process dies between apply and commit
commands.apply(sys.argv[1])
"""


def test_a_crash_before_the_shared_commit_leaves_neither_item_nor_audit_entry(tmp_path: Path, moto: MotoServer) -> None:
    seed = unit("seed", "dynamodb.put_items", {"table": "datasets", "items": [{"id": "a"}, {"id": "b"}]})
    pipe = pipeline(tmp_path / "p", {"0001_t.yaml": create_table(), "0002_seed.yaml": seed})
    commands.apply(pipe, until="t")
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_BEFORE_COMMIT, str(pipe)],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == 3, crashed.stderr[-2000:]
    assert items(moto.client("dynamodb")) == {}
    assert trail(pipe, "seed") == []  # no trace at all
    commands.unlock(pipe, force=True)  # the dead process still holds the lease
    assert commands.apply(pipe)["applied"] == ["seed"]
    assert set(items(moto.client("dynamodb"))) == {"a", "b"}
    assert trail(pipe, "seed") == [("seed", "STARTED", "TX_SHARED"), ("seed", "APPLIED", "TX_SHARED")]


def test_a_lease_taken_over_before_commit_fails_the_whole_transaction(
    tmp_path: Path, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = unit("seed", "dynamodb.put_items", {"table": "datasets", "items": [{"id": "a"}]})
    pipe = pipeline(tmp_path / "p", {"0001_t.yaml": create_table(), "0002_seed.yaml": seed})
    commands.apply(pipe, until="t")
    commit = AwsTargetSession.commit

    def thief_then_commit(self: AwsTargetSession) -> None:
        commands.unlock(pipe, force=True)
        with commands.workspace(pipe) as ws:
            assert ws.leases.acquire(ws.pipeline.id, "thief", 60) is not None
        commit(self)

    monkeypatch.setattr(AwsTargetSession, "commit", thief_then_commit)
    with pytest.raises(LeaseLostError, match="lease lost"):
        commands.apply(pipe)
    assert items(moto.client("dynamodb")) == {} and trail(pipe, "seed") == []


def test_python_unit_on_aws_uses_ctx_client_and_runs_non_transactionally(tmp_path: Path, moto: MotoServer) -> None:
    code = (
        "ID = 'count'\nAUTHOR = 'bob'\n"
        "def apply(ctx):\n"
        "    assert ctx.target is None\n"
        "    ctx.client('dynamodb').put_item(TableName='datasets', Item={'id': {'S': 'py'}})\n"
        "def rollback(ctx):\n"
        "    ctx.client('dynamodb').delete_item(TableName='datasets', Key={'id': {'S': 'py'}})\n"
    )
    pipe = pipeline(tmp_path / "p", {"0001_t.yaml": create_table(), "0002_count.py": code})
    assert commands.apply(pipe)["applied"] == ["t", "count"]
    assert set(items(moto.client("dynamodb"))) == {"py"}
    assert trail(pipe, "count")[-1] == ("count", "APPLIED", "NON_TX")
    commands.undo(pipe, last=1)
    assert items(moto.client("dynamodb")) == {}


@pytest.mark.parametrize(
    ("template", "apply", "message"),
    [
        ("dynamodb.create_table", {"table": "t1", "partition_key": {"name": "id", "type": "X"}}, "type: S|N|B"),
        ("dynamodb.put_items", {"table": "t1", "items": [{"id": str(i)} for i in range(91)]}, "over 90 per step"),
        ("dynamodb.put_items", {"table": "t1"}, "exactly one of 'items' or 'file'"),
        ("dynamodb.update_table", {"table": "t1"}, "nothing to change"),
        ("dynamodb.create_table", {"table": "t1", "partition_key": {"name": "id", "type": "S"}, "tagz": {}}, "tags"),
    ],
)
def test_payload_errors_are_reported_at_parse_time(tmp_path: Path, template: str, apply: Any, message: str) -> None:
    pipe = pipeline(tmp_path / "p", {"0001_x.yaml": unit("x", template, apply)})
    doc = commands.validate(pipe)
    assert not doc["ok"] and message in doc["errors"][0]["message"] and doc["errors"][0]["file"] == "0001_x.yaml"


def test_transactional_true_on_ddl_and_explicit_rollbacks_are_refused(tmp_path: Path) -> None:
    pipe = pipeline(
        tmp_path / "p",
        {
            "0001_a.yaml": unit("a", "dynamodb.create_table", TABLE, transactional=True),
            "0002_b.yaml": unit("b", "dynamodb.delete_table", {"table": "x1"}, rollback={"table": "x1"}),
        },
    )
    with pytest.raises(PipelineValidationError) as err:
        commands.apply(pipe)
    text = str(err.value)
    assert "cannot run in a transaction" in text and "derives its rollback" in text


def test_create_table_failing_on_an_existing_table_leaves_that_table_alone(tmp_path: Path, moto: MotoServer) -> None:
    pipe = pipeline(tmp_path / "p", {"0001_t.yaml": create_table()})
    moto.client("dynamodb").create_table(
        TableName="datasets",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "t" and "ResourceInUse" in result["failed"]["error"]
    assert result["compensated"] == ["t"] and "datasets" in tables(moto)


def test_put_items_costs_three_dynamodb_calls_per_unit(tmp_path: Path, moto: MotoServer) -> None:
    """Counted at the server: the counter (both numbers at once), the capture, the shared transaction."""
    from collections import Counter

    def seed(n: int) -> str:
        return unit(f"s{n}", "dynamodb.put_items", {"table": "datasets", "items": [{"id": f"i{n}", "v": n}]})

    pipe = pipeline(tmp_path / "p", {"0001_t.yaml": create_table(), "0002_s2.yaml": seed(2)})
    assert commands.apply(pipe)["applied"] == ["t", "s2"]

    def apply_counting(*numbers: int) -> Counter[str]:
        for n in numbers:
            (pipe / f"{n:04d}_s{n}.yaml").write_text(seed(n))
        moto.calls.clear()
        assert commands.apply(pipe)["applied"] == [f"s{n}" for n in numbers]
        return Counter(moto.calls)

    one, three = apply_counting(3), apply_counting(4, 5, 6)
    per_unit = three - one
    assert per_unit.total() == 2 * 3, (one, three)  # two more units, three calls each
    assert per_unit == Counter({"UpdateItem": 2, "BatchGetItem": 2, "TransactWriteItems": 2})
    assert three["DescribeTable"] == one["DescribeTable"]  # the table is described once per run
    assert sorted(items(moto.client("dynamodb"))) == ["i2", "i3", "i4", "i5", "i6"]
    assert [s for _, s, _ in trail(pipe, "s6")] == ["STARTED", "APPLIED"]
    seqs = [e["seq"] for e in commands.history(pipe)["entries"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
