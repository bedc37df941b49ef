"""The MongoDB store: audit log and lease in two collections of one database, safe across processes.

- Audit collection (``audit.table``): one document per entry, indexed ``(pipeline, change_id, seq)``
  for a change's history, and unique on ``(pipeline, seq)``.
- Latest collection (``<audit.table>_latest``): a copy of each change's newest entry, ``_id`` =
  ``<pipeline>/<change_id>``, replaced right after the entry is inserted (in the same transaction for
  TX_SHARED), and only by a newer one. :meth:`MongoStore.latest` reads these copies with one aggregate,
  so reading the audit state stays flat however long the history grows. Outside a transaction the
  copy is written second: an append cut between the two writes is an append that did not happen as
  far as decisions go (the next run sees the state before it), never one that looks done.
- Lock collection (``flamingock_lock``): one document per pipeline, ``_id`` = the lease key. Every
  lease write is one conditional ``findAndModify`` whose expiry uses the server's clock (``$$NOW``,
  compared through ``$toLong``). The document also carries the pipeline's audit sequence counter:
  an append increments it with the fence (owner, token, unexpired) as the filter, so the lease check
  and the ordering of entries are one atomic write. It keeps the holder's session id (``lsid``) too,
  so a takeover or ``unlock --force`` ends a dead holder's open transaction with ``killSessions``.
- TX_SHARED (:meth:`MongoStore.shared_target`): the unit's writes and its STARTED/APPLIED entries run
  in one transaction of the store's own ``ClientSession`` (the one whose lsid the lease keeps). Its
  sequence numbers are taken outside the transaction, so a rolled-back unit leaves a gap, never a clash.

pymongo errors become :class:`StoreError` in :meth:`MongoStore._errors`, the one place they are mapped.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flamingock_provider.core.audit import by_member, key_chunks
from flamingock_provider.core.lease import Fence
from flamingock_provider.core.model import AuditConfig, AuditEntry, LeaseInfo, TargetConfig
from flamingock_provider.exceptions import ConfigurationError, LeaseLostError, StoreError
from flamingock_provider.targets.mongo import (
    HookFactory,
    MongoTargetSession,
    connect,
    database_name,
    write_concern,
)

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.client_session import ClientSession
    from pymongo.collection import Collection
    from pymongo.database import Database
    from pymongo.write_concern import WriteConcern

    from flamingock_provider.core.targets import TargetSession

log = logging.getLogger("flamingock.mongo")

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The server's clock as epoch milliseconds: SecantusDB cannot compare stored dates with $$NOW directly.
NOW_MS = {"$toLong": "$$NOW"}
LIVE = {"$expr": {"$gt": [{"$toLong": "$expires_at"}, NOW_MS]}}
EXPIRED = {"$expr": {"$lte": [{"$toLong": "$expires_at"}, NOW_MS]}}
FREED = {"owner": None, "expires_at": EPOCH, "lsid": None}
DUPLICATE_KEY = 11000
SEQ_RETRIES = 5

# -> (a getter of the connection's hook, or None; the client)
Connector = Callable[[], "tuple[HookFactory | None, MongoClient[Any]]"]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _expiry(ttl_s: float) -> dict[str, Any]:
    return {"$toDate": {"$add": [NOW_MS, int(ttl_s * 1000)]}}


def _lease_info(doc: Mapping[str, Any]) -> LeaseInfo:
    lsid = doc.get("lsid")
    extra = {"session_id": lsid["id"].hex()} if isinstance(lsid, Mapping) and "id" in lsid else {}
    return LeaseInfo(
        key=doc["_id"],
        owner=doc["owner"],
        token=int(doc["token"]),
        acquired_at=_aware(doc["acquired_at"]),
        expires_at=_aware(doc["expires_at"]),
        extra=extra,
    )


class MongoStore:
    """Audit store and lease backend over one MongoDB database."""

    def __init__(
        self,
        connector: Connector,
        database: str,
        *,
        conn_id: str | None = None,
        default_database: str | None = None,
        table: str = "flamingock_audit_log",
        lock_table: str = "flamingock_lock",
        concern: WriteConcern | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.database_name = database
        self._default_database = default_database or database
        self._table = table
        self._latest_table = f"{table}_latest"
        self._lock_table = lock_table
        self._connector = connector
        self._concern = concern
        self._guard = threading.RLock()
        self._hook_factory: HookFactory | None = None
        self._client: MongoClient[Any] | None = None
        self._db: Database[Any] | None = None
        self._session: ClientSession | None = None

    # -- connection ------------------------------------------------------------------------

    @property
    def db(self) -> Database[Any]:
        """The store's database, connected and indexed on first use."""
        with self._guard:
            if self._db is None:
                self._db = self._open()
            return self._db

    def _open(self) -> Database[Any]:
        hook_factory, client = self._connector()
        self._hook_factory, self._client = hook_factory, client
        db = client.get_database(self.database_name, write_concern=self._concern or write_concern({}))
        with self._errors("create the audit indexes"):
            db[self._table].create_indexes(_audit_indexes(self._table))
            db[self._latest_table].create_indexes(_latest_indexes(self._latest_table))
        return db

    @property
    def audit(self) -> Collection[Any]:
        return self.db[self._table]

    @property
    def latest_copies(self) -> Collection[Any]:
        return self.db[self._latest_table]

    @property
    def locks(self) -> Collection[Any]:
        return self.db[self._lock_table]

    def client_session(self) -> ClientSession:
        """The session this runner's shared transactions use; its id is kept with the lease."""
        with self._guard:
            if self._session is None:
                self._session = self._mongo_client().start_session()
            return self._session

    def _mongo_client(self) -> MongoClient[Any]:
        self.db  # noqa: B018 - connects on first use
        assert self._client is not None
        return self._client

    def _lsid(self) -> Any:
        return self.client_session().session_id

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        from bson.errors import BSONError
        from pymongo.errors import PyMongoError

        try:
            yield
        except (PyMongoError, BSONError) as err:
            raise StoreError(
                f"MongoDB audit store {self.conn_id or '-'!r} (database {self.database_name!r}) failed to "
                f"{what}: {type(err).__name__}: {err}; check the server is reachable and the connection"
            ) from err

    def close(self) -> None:
        with self._guard:
            session, self._session = self._session, None
            client, self._client = self._client, None
            self._db = None
        try:
            if session is not None:
                session.end_session()
        finally:
            if client is not None:
                client.close()

    # -- audit ------------------------------------------------------------------------------

    def append(self, entry: AuditEntry, *, fence: Fence | None = None, tx: TargetSession | None = None) -> AuditEntry:
        seq = self._next_seq(entry.audit_key, fence)
        doc = _to_document(entry, seq)
        session = self._joined(tx) if tx is not None else None
        with self._errors(f"append {entry.state.value} of change {entry.change_id!r}"):
            self.audit.insert_one(doc, session=session)
            self._keep_latest(doc, session)
        return replace(entry, seq=seq)

    def _keep_latest(self, doc: Mapping[str, Any], session: ClientSession | None) -> None:
        """Replace the change's latest copy unless a newer entry already did."""
        from pymongo.errors import DuplicateKeyError

        copy = latest_copy(doc)
        try:
            self.latest_copies.replace_one(
                {"_id": copy["_id"], "seq": {"$lt": copy["seq"]}}, copy, upsert=True, session=session
            )
        except DuplicateKeyError:  # the copy exists with a newer seq: it stays
            pass

    def _next_seq(self, pipeline: str, fence: Fence | None) -> int:
        """Increment the pipeline's counter; under a fence only while that owner and token hold the lease."""
        if fence is not None and fence.key != pipeline:
            raise StoreError(f"fence key {fence.key!r} is not pipeline {pipeline!r}; the lease key is the pipeline id")
        query: dict[str, Any] = {"_id": pipeline}
        if fence is not None:
            query.update(owner=fence.owner, token=fence.token, **LIVE)
        seq = self._increment(query, upsert=fence is None)
        if seq is None:
            assert fence is not None
            raise LeaseLostError(fence.key, fence.owner, fence.token, "audit write refused by the store")
        return seq if seq > 1 else self._resync(pipeline, query)

    def _increment(self, query: Mapping[str, Any], *, upsert: bool) -> int | None:
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        for _ in range(SEQ_RETRIES):
            with self._errors("number an audit entry"):
                try:
                    doc = self.locks.find_one_and_update(
                        query, {"$inc": {"seq": 1}}, {"seq": 1}, upsert=upsert, return_document=ReturnDocument.AFTER
                    )
                except DuplicateKeyError:  # two first upserts raced: the document exists now
                    continue
            return None if doc is None else int(doc["seq"])
        raise StoreError(f"could not number an audit entry of pipeline {query['_id']!r}: contention; run again")

    def _resync(self, pipeline: str, query: Mapping[str, Any]) -> int:
        """A fresh counter (new pipeline, or its lock document deleted by hand) continues after the log."""
        from pymongo import ReturnDocument

        with self._errors("resume the audit sequence"):
            top = self.audit.find_one({"pipeline": pipeline}, {"seq": 1}, sort=[("seq", -1)])
            if top is None:
                return 1
            doc = self.locks.find_one_and_update(
                query, {"$max": {"seq": int(top["seq"]) + 1}}, {"seq": 1}, return_document=ReturnDocument.AFTER
            )
        if doc is None:
            raise LeaseLostError(pipeline, str(query.get("owner")), int(query.get("token", -1)), "lease gone")
        return int(doc["seq"])

    def latest(self, pipeline: str) -> Mapping[str, AuditEntry]:
        with self._errors(f"read the latest entries of pipeline {pipeline!r}"):
            rows = list(self.latest_copies.aggregate([{"$match": {"pipeline": pipeline}}]))
        entries = (_from_document(row) for row in rows)
        return {e.change_id: e for e in entries}

    def latest_members(self, pipeline: str, members: Sequence[str]) -> Mapping[str, Mapping[str, AuditEntry]]:
        rows: list[Any] = []
        with self._errors(f"read the latest entries of the members of pipeline {pipeline!r}"):
            for keys in key_chunks(pipeline, members):
                rows += self.latest_copies.find({"pipeline": {"$in": keys}})
        return by_member(pipeline, members, map(_from_document, rows))

    def history(self, pipeline: str, change_id: str | None = None) -> Sequence[AuditEntry]:
        query = {"pipeline": pipeline}
        if change_id is not None:
            query["change_id"] = change_id
        with self._errors(f"read the history of pipeline {pipeline!r}"):
            docs = list(self.audit.find(query).sort("seq", 1))
        return [_from_document(doc) for doc in docs]

    def _joined(self, tx: TargetSession) -> ClientSession:
        """The client session of a shared transaction on this store's database (TX_SHARED)."""
        if not isinstance(tx, MongoTargetSession) or tx.native is not self.db or tx.session is None:
            raise ConfigurationError(
                f"the MongoDB audit store can only join an open transaction on its own database, not a "
                f"{tx.kind!r} target session"
            )
        return tx.session

    def shared_target(self, target: TargetConfig) -> MongoTargetSession | None:
        """A session on the store's own database (same connection and database): TX_SHARED."""
        if self.conn_id is None or target.conn_id != self.conn_id:
            return None
        if (target.database or self._default_database) != self.database_name:
            return None
        return MongoTargetSession(
            self._mongo_client(),
            self.db,
            target,
            hook_factory=self._hook_factory,
            shared_session=self.client_session,
            owns_client=False,
        )

    # -- lease ------------------------------------------------------------------------------

    def acquire(self, key: str, owner: str, ttl_s: float) -> LeaseInfo | None:
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        query = {"_id": key, "$or": [{"owner": None}, {"owner": owner}, EXPIRED]}
        fields = {
            "owner": {"$literal": owner},
            "token": {"$add": [{"$ifNull": ["$token", 0]}, 1]},
            "acquired_at": "$$NOW",
            "expires_at": _expiry(ttl_s),
            "lsid": {"$literal": self._lsid()},
            "previous": {"owner": "$owner", "lsid": "$lsid"},
        }
        with self._errors(f"acquire the lease of {key!r}"):
            try:
                doc = self.locks.find_one_and_update(
                    query, [{"$set": fields}], upsert=True, return_document=ReturnDocument.AFTER
                )
            except DuplicateKeyError:  # the filter missed an existing, live lease: held
                return None
        if doc is None:  # an upsert always returns the document; anything else is not ours
            return None
        previous = doc.get("previous") or {}
        if previous.get("owner") not in (None, owner):
            self._end_sessions(previous.get("lsid"), previous["owner"])
        return _lease_info(doc)

    def extend(self, key: str, owner: str, token: int, ttl_s: float) -> LeaseInfo | None:
        from pymongo import ReturnDocument

        fields = {"expires_at": _expiry(ttl_s), "lsid": {"$literal": self._lsid()}}
        with self._errors(f"extend the lease of {key!r}"):
            doc = self.locks.find_one_and_update(
                {"_id": key, "owner": owner, "token": token},
                [{"$set": fields}],
                return_document=ReturnDocument.AFTER,
            )
        return None if doc is None else _lease_info(doc)

    def release(self, key: str, owner: str, token: int) -> bool:
        with self._errors(f"release the lease of {key!r}"):
            result = self.locks.update_one({"_id": key, "owner": owner, "token": token}, {"$set": FREED})
        return result.matched_count == 1

    def current(self, key: str) -> LeaseInfo | None:
        with self._errors(f"read the lease of {key!r}"):
            doc = self.locks.find_one({"_id": key, "owner": {"$ne": None}, **LIVE})
        return None if doc is None else _lease_info(doc)

    def current_many(self, keys: Sequence[str]) -> Mapping[str, LeaseInfo]:
        """The live holders of ``keys`` in one query (a fleet's member leases)."""
        with self._errors(f"read the leases of {len(keys)} fleet members"):
            docs = list(self.locks.find({"_id": {"$in": list(keys)}, "owner": {"$ne": None}, **LIVE})) if keys else []
        return {info.key: info for info in map(_lease_info, docs)}

    def force_release(self, key: str) -> LeaseInfo | None:
        with self._errors(f"release the lease of {key!r}"):
            doc = self.locks.find_one_and_update({"_id": key, "owner": {"$ne": None}}, {"$set": FREED})
        if doc is None:
            return None
        self._end_sessions(doc.get("lsid"), doc["owner"])
        return _lease_info(doc)

    def _end_sessions(self, lsid: Any, owner: str) -> None:
        """End a previous holder's server session, aborting a transaction it left open."""
        if not isinstance(lsid, Mapping) or lsid == self._lsid():
            return
        from pymongo.errors import PyMongoError

        try:
            self._mongo_client().admin.command("killSessions", [lsid])
        except PyMongoError as err:  # the server times the transaction out eventually anyway
            log.warning("could not end the session of previous lease holder %s: %s", owner, err)


def _audit_indexes(table: str) -> list[Any]:
    from pymongo import ASCENDING, DESCENDING, IndexModel

    return [
        IndexModel([("pipeline", ASCENDING), ("change_id", ASCENDING), ("seq", DESCENDING)], name=f"{table}_latest"),
        IndexModel([("pipeline", ASCENDING), ("seq", ASCENDING)], name=f"{table}_order", unique=True),
    ]


def _latest_indexes(table: str) -> list[Any]:
    from pymongo import ASCENDING, IndexModel

    return [IndexModel([("pipeline", ASCENDING)], name=f"{table}_by_pipeline")]


def latest_copy(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The latest-collection copy of an audit document (``_id`` = ``<pipeline>/<change_id>``)."""
    return {**doc, "_id": f"{doc['pipeline']}/{doc['change_id']}"}


def _to_document(entry: AuditEntry, seq: int) -> dict[str, Any]:
    """The entry as BSON: plain JSON values (as the embedded store keeps them), a real date, the seq."""
    data = entry.to_dict()
    state = data.pop("undo_state")
    doc: dict[str, Any] = json.loads(json.dumps(data, default=str))  # e.g. YAML dates in metadata
    # Undo states are kept as JSON text: they hold extended JSON ("$oid" keys) that field names may not.
    doc.update(
        seq=seq, created_at=entry.created_at, undo_state=None if state is None else json.dumps(state, default=str)
    )
    doc["pipeline"] = entry.audit_key  # a fleet member's trail is filed under <pipeline>@<member> (SPEC §13)
    return doc


def _from_document(doc: Mapping[str, Any]) -> AuditEntry:
    data = {k: v for k, v in doc.items() if k != "_id"}
    data["pipeline"] = str(data["pipeline"]).partition("@")[0]
    data["created_at"] = _aware(data["created_at"])
    raw = data.get("undo_state")
    data["undo_state"] = json.loads(raw) if isinstance(raw, str) else raw
    return AuditEntry.from_dict(data)


def open_mongo_store(config: AuditConfig, conn: Any) -> MongoStore:
    """Build the store from an Airflow ``mongo`` connection; it connects on first use."""
    conn_id = config.conn_id or conn.conn_id
    database = database_name(conn_id, config.database, conn.schema, "audit store")
    return MongoStore(
        lambda: connect(conn),
        database,
        conn_id=conn_id,
        default_database=conn.schema,
        table=config.table,
        lock_table=config.lock_table,
        concern=write_concern(conn.extra_dejson),
    )
