"""The DynamoDB store on the moto server: audit log, lease semantics, fencing, processes contending."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from flamingock_provider.core.lease import Fence, Lease
from flamingock_provider.core.model import Action, AuditEntry, LockConfig, State, TargetConfig
from flamingock_provider.exceptions import ConfigurationError, LeaseLostError, LockTimeoutError, StoreError
from flamingock_provider.stores.dynamodb import DynamoDBStore
from tests.fixtures.moto_server import MotoServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def entry(change: str, state: State = State.APPLIED, pipeline: str = "p", **extra: Any) -> AuditEntry:
    return AuditEntry(
        pipeline=pipeline,
        stage="main",
        change_id=change,
        author="a",
        state=state,
        action=Action.APPLY,
        created_at=datetime.now(timezone.utc),
        execution_id="e",
        **extra,
    )


def count_calls(client: Any, operation: str) -> list[str]:
    calls: list[str] = []
    client.meta.events.register(f"before-call.dynamodb.{operation}", lambda **_: calls.append(operation))
    return calls


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


def test_latest_is_one_query_over_many_entries(moto: MotoServer, store: DynamoDBStore) -> None:
    for i in range(30):
        store.append(entry(f"c{i}", State.STARTED))
        store.append(entry(f"c{i}", State.APPLIED))
    store.append(entry("other", pipeline="q"))
    queries = count_calls(store.client, "Query")
    latest = store.latest("p")
    assert len(queries) == 1
    assert len(latest) == 30 and all(e.state is State.APPLIED for e in latest.values())
    assert [e.state for e in store.history("p", "c3")] == [State.STARTED, State.APPLIED]
    seqs = [e.seq or 0 for e in store.history("p")]
    assert seqs == sorted(seqs) and len(set(seqs)) == 60


def test_entries_round_trip_every_field_even_when_large(store: DynamoDBStore) -> None:
    small = store.append(entry("c1", undo_state={"previous": [1, 2]}, metadata={"team": "lake"}))
    large = store.append(entry("c2", undo_state={"body": "x" * 200_000}))
    again = {e.change_id: e for e in store.history("p")}
    assert again["c1"].to_dict() == small.to_dict()
    assert again["c2"].to_dict() == large.to_dict()  # stored compressed: under the 400 KB item limit


def test_acquire_is_exclusive_and_tokens_increase(store: DynamoDBStore) -> None:
    first = store.acquire("p", "A", 30)
    assert first is not None and first.token == 1
    assert store.acquire("p", "B", 30) is None
    assert store.acquire("q", "B", 30) is not None  # other pipelines never block
    assert store.release("p", "A", 1)
    assert not store.release("p", "A", 1)
    second = store.acquire("p", "B", 30)
    assert second is not None and second.token == 2
    again = store.acquire("p", "B", 30)  # same owner: taken again, with a new token
    assert again is not None and again.token == 3


def test_expiry_allows_takeover_and_fences_the_old_holder(moto: MotoServer) -> None:
    clock = FakeClock()
    store = DynamoDBStore(moto.client("dynamodb"), clock=clock)
    assert store.acquire("p", "A", 10) is not None
    clock.now += 11
    taken = store.acquire("p", "B", 10)
    assert taken is not None and taken.token == 2
    assert store.extend("p", "A", 1, 10) is None
    assert not store.release("p", "A", 1)
    with pytest.raises(LeaseLostError):
        store.append(entry("c1"), fence=Fence("p", "A", 1))
    assert store.history("p") == [] and store.latest("p") == {}
    store.append(entry("c1"), fence=Fence("p", "B", 2))
    assert len(store.history("p")) == 1


def test_fenced_append_refused_after_expiry_even_without_takeover(moto: MotoServer) -> None:
    clock = FakeClock()
    store = DynamoDBStore(moto.client("dynamodb"), clock=clock)
    store.acquire("p", "A", 10)
    clock.now += 10.5
    with pytest.raises(LeaseLostError, match="lease lost"):
        store.append(entry("c1"), fence=Fence("p", "A", 1))
    extended = store.extend("p", "A", 1, 10)
    assert extended is not None and extended.expires_at.timestamp() == pytest.approx(clock.now + 10)


def test_current_and_force_release(store: DynamoDBStore) -> None:
    assert store.current("p") is None and store.force_release("p") is None
    store.acquire("p", "A", 30)
    holder = store.current("p")
    assert holder is not None and holder.owner == "A" and holder.expires_at.tzinfo is timezone.utc
    previous = store.force_release("p")
    assert previous is not None and previous.owner == "A" and previous.token == 1
    assert store.current("p") is None and store.force_release("p") is None
    assert store.acquire("p", "B", 30).token == 2  # type: ignore[union-attr]


def test_lease_waits_while_held_and_times_out_naming_the_holder(store: DynamoDBStore) -> None:
    store.acquire("p", "cli/host/1/abcd", 60)
    lease = Lease(store, "p", "B", LockConfig(wait_timeout_seconds=0.4, poke_interval_seconds=0.05))
    attempts = count_calls(store.client, "UpdateItem")
    with pytest.raises(LockTimeoutError) as err:
        lease.acquire()
    assert "cli/host/1/abcd" in str(err.value) and err.value.exit_code == 3
    assert len(attempts) >= 3  # every failed conditional write meant "wait and try again"


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


# -- processes contending for one lease ---------------------------------------------------------


def _contend(endpoint: str, owner: str, rounds: int, out: Any) -> None:
    """One process: take the lease through Lease.acquire (waiting), hold it briefly, release it."""
    import boto3

    client = boto3.client(
        "dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    store = DynamoDBStore(client)
    held, refused = [], 0
    original = store.acquire

    def counting(key: str, who: str, ttl: float) -> Any:
        nonlocal refused
        info = original(key, who, ttl)
        refused += info is None
        return info

    store.acquire = counting  # type: ignore[method-assign,assignment]
    for _ in range(rounds):
        lease = Lease(
            store, "p", owner, LockConfig(lease_seconds=30, wait_timeout_seconds=60, poke_interval_seconds=0.01)
        )
        info = lease.acquire()
        start = time.time()
        time.sleep(0.01)
        held.append((start, time.time(), info.token))
        assert lease.release()
    out.put((held, refused))


def test_processes_wait_for_each_other_and_never_hold_the_lease_together(moto: MotoServer) -> None:
    DynamoDBStore(moto.client("dynamodb"))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_contend, args=(moto.endpoint_url, f"o{i}", 6, queue)) for i in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    intervals = sorted(i for held, _ in results for i in held)
    tokens = [t for _, _, t in intervals]
    assert len(intervals) == 24 and tokens == sorted(tokens) and len(set(tokens)) == 24
    for (_, end, _), (start, _, _) in itertools.pairwise(intervals):
        assert end <= start
    assert sum(refused for _, refused in results) > 0  # contention happened and meant waiting


def test_a_grant_overwritten_by_a_racing_writer_counts_as_not_acquired(moto: MotoServer) -> None:
    """moto's conditional writes are not atomic: acquire re-reads and trusts only what it sees."""
    store = DynamoDBStore(moto.client("dynamodb"))
    racer = moto.client("dynamodb")

    def overwrite(**_: Any) -> None:
        item = {"key": {"S": "p"}, "owner": {"S": "racer"}, "token": {"N": "1"}, "expires_at": {"N": "9e12"}}
        racer.put_item(TableName="flamingock_lock", Item=item)

    store.client.meta.events.register("after-call.dynamodb.UpdateItem", overwrite)
    assert store.acquire("p", "A", 30) is None
