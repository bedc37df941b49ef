"""What only the DynamoDB store does (the shared contract is in test_audit_contract.py and test_lease_contract.py):
its tables, expiry on the runner's clock, shared targets, errors, and moto's non-atomic conditional writes."""

from __future__ import annotations

from typing import Any

import pytest

from flamingock_provider.core.lease import Fence
from flamingock_provider.core.model import TargetConfig
from flamingock_provider.exceptions import ConfigurationError, LeaseLostError, StoreError
from flamingock_provider.stores.dynamodb import DynamoDBStore
from tests.fixtures.moto_server import MotoServer
from tests.stores.conftest import FakeClock, entry


@pytest.fixture
def store(moto: MotoServer) -> DynamoDBStore:
    return DynamoDBStore(moto.client("dynamodb"))


def test_tables_are_created_on_demand_and_on_demand_billed(moto: MotoServer, store: DynamoDBStore) -> None:
    client = moto.client("dynamodb")
    assert {"flamingock_audit_log", "flamingock_lock"} <= set(client.list_tables()["TableNames"])
    table = client.describe_table(TableName="flamingock_audit_log")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    DynamoDBStore(client)  # a second runner finds them in place


def test_a_foreign_table_with_another_key_schema_is_refused(moto: MotoServer) -> None:
    client = moto.client("dynamodb")
    client.create_table(
        TableName="audit_x",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigurationError, match="audit_x.*key schema"):
        DynamoDBStore(client, table="audit_x")


def test_an_expired_holder_may_extend_until_another_owner_takes_over(moto: MotoServer) -> None:
    """Expiry is judged on the runner's clock: extend checks owner and token only, a fenced write the expiry too."""
    clock = FakeClock()
    store = DynamoDBStore(moto.client("dynamodb"), clock=clock)
    store.acquire("p", "A", 10)
    clock.now += 11
    with pytest.raises(LeaseLostError, match="lease lost"):
        store.append(entry("c1"), fence=Fence("p", "A", 1))
    extended = store.extend("p", "A", 1, 10)
    assert extended is not None and extended.expires_at.timestamp() == pytest.approx(clock.now + 10)
    store.append(entry("c1"), fence=Fence("p", "A", 1))  # live again: accepted
    assert [e.change_id for e in store.history("p")] == ["c1"]


def test_shared_target_only_for_the_same_connection(moto: MotoServer) -> None:
    store = DynamoDBStore(moto.client("dynamodb"), conn_id="aws_default")
    assert store.shared_target(TargetConfig("lake", "aws_default")) is not None
    assert store.shared_target(TargetConfig("other", "aws_other")) is None
    assert DynamoDBStore(moto.client("dynamodb")).shared_target(TargetConfig("lake", "aws_default")) is None


def test_an_unreachable_endpoint_is_a_store_error() -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(StoreError, match="unreachable.*endpoint_url"):
        DynamoDBStore(client)


def test_a_grant_overwritten_by_a_racing_writer_counts_as_not_acquired(moto: MotoServer) -> None:
    """moto's conditional writes are not atomic: acquire re-reads and trusts only what it sees."""
    store = DynamoDBStore(moto.client("dynamodb"))
    racer = moto.client("dynamodb")

    def overwrite(**_: Any) -> None:
        item = {"key": {"S": "p"}, "owner": {"S": "racer"}, "token": {"N": "1"}, "expires_at": {"N": "9e12"}}
        racer.put_item(TableName="flamingock_lock", Item=item)

    store.client.meta.events.register("after-call.dynamodb.UpdateItem", overwrite)
    assert store.acquire("p", "A", 30) is None
