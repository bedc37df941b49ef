"""The MongoDB store on a real server: audit log, lease on the server's clock, fencing, sessions, errors."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from pymongo import monitoring
from pymongo.errors import PyMongoError

from flamingock_provider.core.lease import Fence, Lease
from flamingock_provider.core.model import Action, AuditConfig, AuditEntry, ErrorInfo, LockConfig, State, TargetConfig
from flamingock_provider.exceptions import ConfigurationError, LeaseLostError, LockTimeoutError, StoreError
from flamingock_provider.stores import open_store
from flamingock_provider.stores.mongo import MongoStore, open_mongo_store
from flamingock_provider.targets import open_target
from flamingock_provider.targets.connections import EnvConnection
from tests.fixtures.mongo_pipelines import direct_store
from tests.fixtures.mongo_server import CONN_ID, MongoDatabase, MongoServer


class Commands(monitoring.CommandListener):
    """Records the names of the commands a client sends."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def entry(change: str, state: State = State.APPLIED, pipeline: str = "p", **extra: Any) -> AuditEntry:
    return AuditEntry(
        pipeline=pipeline,
        stage="main",
        change_id=change,
        author="a",
        state=state,
        action=Action.APPLY,
        created_at=datetime.now(timezone.utc).replace(microsecond=0),
        execution_id="e",
        **extra,
    )


@pytest.fixture
def store(mongo_conn: MongoDatabase) -> Iterator[MongoStore]:
    store = direct_store(mongo_conn.server, mongo_conn.name)
    yield store
    store.close()


def test_latest_is_one_aggregate_over_many_entries(mongo_conn: MongoDatabase) -> None:
    listener = Commands()
    store = direct_store(mongo_conn.server, mongo_conn.name, event_listeners=[listener])
    for i in range(40):
        store.append(entry(f"c{i}", State.STARTED))
        store.append(entry(f"c{i}", State.APPLIED))
    store.append(entry("other", pipeline="q"))
    listener.names.clear()
    latest = store.latest("p")
    assert listener.names == ["aggregate"]
    assert len(latest) == 40 and all(e.state is State.APPLIED for e in latest.values())
    assert [e.state for e in store.history("p", "c3")] == [State.STARTED, State.APPLIED]
    indexes = mongo_conn.db.flamingock_audit_log.index_information()
    assert indexes["flamingock_audit_log_latest"]["key"] == [("pipeline", 1), ("change_id", 1), ("seq", -1)]
    assert indexes["flamingock_audit_log_order"]["unique"] is True
    store.close()


def test_entry_round_trips_every_field(store: MongoStore) -> None:
    original = entry(
        "c1",
        error=ErrorInfo("ValueError", "boom", "trace"),
        metadata={"team": "catalog"},
        undo_state=[{"ids": [{"$oid": "65f000000000000000000001"}]}],
        lock_token=3,
    )
    stored = store.append(original)
    [again] = store.history("p")
    assert stored.seq == again.seq == 1
    assert again.to_dict() == stored.to_dict()
    assert again.created_at.tzinfo is not None


def test_sequence_is_per_pipeline_and_survives_a_deleted_lock_document(
    store: MongoStore, mongo_conn: MongoDatabase
) -> None:
    assert [store.append(entry(f"c{i}")).seq for i in range(3)] == [1, 2, 3]
    assert store.append(entry("x", pipeline="q")).seq == 1
    mongo_conn.db.flamingock_lock.delete_many({})  # an operator "clearing the lock" by hand
    assert store.append(entry("c0", State.ROLLED_BACK)).seq == 4
    assert store.latest("p")["c0"].state is State.ROLLED_BACK


def test_acquire_is_exclusive_and_tokens_increase(store: MongoStore) -> None:
    first = store.acquire("p", "A", 30)
    assert first is not None and first.token == 1 and first.expires_at > first.acquired_at
    assert store.acquire("p", "B", 30) is None  # a held lease: the upsert's duplicate key
    assert store.acquire("q", "B", 30) is not None  # other pipelines never block
    again = store.acquire("p", "A", 30)
    assert again is not None and again.token == 2  # every acquisition increments
    assert store.release("p", "A", 2) and not store.release("p", "A", 2)
    second = store.acquire("p", "B", 30)
    assert second is not None and second.token == 3


def test_expiry_on_the_server_clock_allows_takeover_and_fences_the_old_holder(store: MongoStore) -> None:
    assert store.acquire("p", "A", 0.3) is not None
    time.sleep(0.4)
    taken = store.acquire("p", "B", 30)
    assert taken is not None and taken.token == 2
    assert store.extend("p", "A", 1, 30) is None
    assert not store.release("p", "A", 1)
    with pytest.raises(LeaseLostError):
        store.append(entry("c1"), fence=Fence("p", "A", 1))
    assert store.history("p") == []
    store.append(entry("c1"), fence=Fence("p", "B", 2))
    assert len(store.history("p")) == 1


def test_fenced_append_refused_after_expiry_even_without_takeover(store: MongoStore) -> None:
    store.acquire("p", "A", 0.6)
    store.append(entry("c1", State.STARTED), fence=Fence("p", "A", 1))
    time.sleep(0.7)
    with pytest.raises(LeaseLostError, match="lease lost"):
        store.append(entry("c1"), fence=Fence("p", "A", 1))
    assert [e.state for e in store.history("p")] == [State.STARTED]


def test_current_and_force_release(store: MongoStore) -> None:
    assert store.current("p") is None
    store.acquire("p", "A", 30)
    holder = store.current("p")
    assert holder is not None and holder.owner == "A" and holder.expires_at.tzinfo is not None
    assert len(holder.extra["session_id"]) == 32  # the holder's lsid, for killSessions
    previous = store.force_release("p")
    assert previous is not None and previous.owner == "A"
    assert store.current("p") is None and store.force_release("p") is None
    store.acquire("p", "B", 0.1)
    time.sleep(0.2)
    assert store.current("p") is None  # expired: not a live holder


def test_lease_wait_times_out_naming_the_holder(store: MongoStore) -> None:
    store.acquire("p", "cli/host/1/abcd", 60)
    lease = Lease(store, "p", "B", LockConfig(wait_timeout_seconds=0.3, poke_interval_seconds=0.05))
    with pytest.raises(LockTimeoutError) as err:
        lease.acquire()
    assert "cli/host/1/abcd" in str(err.value) and err.value.exit_code == 3


@pytest.mark.parametrize("how", ["expiry", "unlock"])
def test_takeover_or_unlock_ends_the_previous_holders_open_transaction(mongo_conn: MongoDatabase, how: str) -> None:
    dead = direct_store(mongo_conn.server, mongo_conn.name, conn_id=CONN_ID)
    heir = direct_store(mongo_conn.server, mongo_conn.name, conn_id=CONN_ID)
    assert dead.acquire("p", "dead", 0.3 if how == "expiry" else 30) is not None
    session = dead.shared_target(TargetConfig("catalog", CONN_ID))
    assert session is not None
    session.begin()
    session.native.products.insert_one({"_id": 1, "by": "dead"}, session=session.session)
    if how == "expiry":
        time.sleep(0.4)  # its lease expires with the transaction still open on the server
        assert heir.acquire("p", "heir", 30) is not None  # and the takeover ends the dead holder's session
    else:
        previous = heir.force_release("p")  # `flamingock unlock --force`
        assert previous is not None and previous.owner == "dead"
    writer = mongo_conn.server.client(timeoutMS=10_000)  # would wait for the open transaction otherwise
    writer[mongo_conn.name].products.insert_one({"_id": 1, "by": "heir"})
    with pytest.raises(StoreError):
        session.commit()
    assert list(mongo_conn.db.products.find()) == [{"_id": 1, "by": "heir"}]
    for closing in (dead, heir, writer):
        closing.close()


def test_pymongo_errors_become_store_errors(mongo_conn: MongoDatabase) -> None:
    server = MongoServer(mongo_conn.server.storage)
    server.uri = "mongodb://127.0.0.1:9/"  # nothing listens there
    store = MongoStore(lambda: (None, server.client(serverSelectionTimeoutMS=200)), "ops", conn_id="gone")
    with pytest.raises(StoreError, match="'gone'.*failed to create the audit indexes") as err:
        store.latest("p")
    assert isinstance(err.value.__cause__, PyMongoError)


def test_store_and_target_open_from_the_airflow_connection(mongo_conn: MongoDatabase) -> None:
    store = open_store(AuditConfig(conn_id=CONN_ID))
    assert isinstance(store, MongoStore) and store.database_name == mongo_conn.name
    assert store.db.write_concern.document == {"w": "majority"}  # the default for audit writes
    shared = store.shared_target(TargetConfig("catalog", CONN_ID))
    assert shared is not None and shared.native.name == mongo_conn.name and shared.hook is not None
    assert store.shared_target(TargetConfig("other", CONN_ID, database="elsewhere")) is None
    store.close()
    target = open_target(TargetConfig("other", CONN_ID, database="elsewhere"))
    assert target.kind == "mongo" and target.native.name == "elsewhere" and target.session is None
    with pytest.raises(ConfigurationError, match="ctx.target"):
        target.client("s3")
    target.close()


def test_a_connection_without_database_is_a_configuration_error() -> None:
    conn = EnvConnection("bare", "mongo", host="127.0.0.1", port=27017)
    with pytest.raises(ConfigurationError, match="names no database; set 'database:' in pipeline.yaml"):
        open_mongo_store(AuditConfig(conn_id="bare"), conn)


def _grab(uri: str, database: str, owner: str, rounds: int, out: Any) -> None:
    from pymongo import MongoClient

    store = MongoStore(lambda: (None, MongoClient(uri)), database)
    held = []
    for _ in range(rounds):
        info = store.acquire("p", owner, 5)
        if info is not None:
            start = time.time()
            time.sleep(0.002)
            held.append((start, time.time(), info.token))
            assert store.release("p", owner, info.token)
    store.close()
    out.put(held)


def test_processes_never_hold_the_lease_together(mongo_conn: MongoDatabase) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a process with pymongo threads
    queue = context.Queue()
    args = (mongo_conn.server.uri, mongo_conn.name)
    procs = [context.Process(target=_grab, args=(*args, f"o{i}", 25, queue)) for i in range(3)]
    for p in procs:
        p.start()
    intervals = sorted(i for _ in procs for i in queue.get(timeout=60))
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    tokens = [t for _, _, t in intervals]
    assert intervals and len(tokens) == len(set(tokens))
    for (_, end, _), (start, _, _) in itertools.pairwise(intervals):
        assert end <= start
