"""What only the MongoDB store does (the shared contract is in test_audit_contract.py and test_lease_contract.py):
its indexes and latest copies, per-pipeline sequences, ending a dead holder's session, errors, connections."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pymongo.errors import PyMongoError

from flamingock_provider.core.model import AuditConfig, State, TargetConfig
from flamingock_provider.core.workspace import open_store
from flamingock_provider.exceptions import ConfigurationError, StoreError
from flamingock_provider.stores.mongo import MongoStore, open_mongo_store
from flamingock_provider.targets import open_target
from flamingock_provider.targets.connections import EnvConnection
from tests.fixtures.mongo_pipelines import direct_store
from tests.fixtures.mongo_server import CONN_ID, MongoDatabase, MongoServer
from tests.stores.conftest import entry

LEASE_S = 0.5


@pytest.fixture
def store(mongo_conn: MongoDatabase) -> Iterator[MongoStore]:
    store = direct_store(mongo_conn.server, mongo_conn.name)
    yield store
    store.close()


def test_the_audit_collections_are_indexed_for_latest_and_order(store: MongoStore, mongo_conn: MongoDatabase) -> None:
    store.append(entry("c1"))
    indexes = mongo_conn.db.flamingock_audit_log.index_information()
    assert indexes["flamingock_audit_log_latest"]["key"] == [("pipeline", 1), ("change_id", 1), ("seq", -1)]
    assert indexes["flamingock_audit_log_order"]["unique"] is True
    copies = list(mongo_conn.db.flamingock_audit_log_latest.find())
    assert [c["_id"] for c in copies] == ["p/c1"]  # latest() reads these copies, one per change


def test_sequence_is_per_pipeline_and_survives_a_deleted_lock_document(
    store: MongoStore, mongo_conn: MongoDatabase
) -> None:
    assert [store.append(entry(f"c{i}")).seq for i in range(3)] == [1, 2, 3]
    assert store.append(entry("x", pipeline="q")).seq == 1
    mongo_conn.db.flamingock_lock.delete_many({})  # an operator "clearing the lock" by hand
    assert store.append(entry("c0", State.ROLLED_BACK)).seq == 4
    assert store.latest("p")["c0"].state is State.ROLLED_BACK


def test_the_holder_carries_its_session_id_for_kill_sessions(store: MongoStore) -> None:
    store.acquire("p", "A", 30)
    holder = store.current("p")
    assert holder is not None and len(holder.extra["session_id"]) == 32  # the holder's lsid, for killSessions
    previous = store.force_release("p")
    assert previous is not None and previous.extra["session_id"] == holder.extra["session_id"]


@pytest.mark.parametrize("how", ["expiry", "unlock"])
def test_takeover_or_unlock_ends_the_previous_holders_open_transaction(mongo_conn: MongoDatabase, how: str) -> None:
    dead = direct_store(mongo_conn.server, mongo_conn.name, conn_id=CONN_ID)
    heir = direct_store(mongo_conn.server, mongo_conn.name, conn_id=CONN_ID)
    assert dead.acquire("p", "dead", LEASE_S if how == "expiry" else 30) is not None
    session = dead.shared_target(TargetConfig("catalog", CONN_ID))
    assert session is not None
    session.begin()
    session.native.products.insert_one({"_id": 1, "by": "dead"}, session=session.session)
    if how == "expiry":
        time.sleep(LEASE_S + 1.0)  # its lease expires (on the server's clock) with the transaction still open
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
