"""MongoDB targets: ``ctx.target`` is a pymongo ``Database``, ``ctx.session`` its transaction's ``ClientSession``.

The client comes from the mongo provider's ``MongoHook``, built when a unit runs (never at parse
time: the hook reads its connection in ``__init__``). Writes default to majority write concern
unless the connection's extras set ``w``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flamingock_provider.core.model import TargetConfig
from flamingock_provider.core.targets import MARKER_TABLE
from flamingock_provider.exceptions import ConfigurationError, StoreError

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.client_session import ClientSession
    from pymongo.database import Database
    from pymongo.write_concern import WriteConcern


def write_concern(extras: Mapping[str, Any]) -> WriteConcern:
    """Majority unless the connection's extras say otherwise (``{"w": 1}``)."""
    from pymongo.write_concern import WriteConcern

    w = extras.get("w", "majority")
    return WriteConcern(w=int(w) if str(w).isdigit() else w)


def database_name(conn_id: str, configured: str | None, schema: str | None, what: str) -> str:
    """The database a target or the audit store uses: pipeline.yaml's ``database``, else the connection's schema."""
    name = configured or schema
    if not name:
        raise ConfigurationError(
            f"{what}: connection {conn_id!r} names no database; set 'database:' in pipeline.yaml or the "
            f"connection's schema (mongo://host:27017/<database>)"
        )
    return name


def connect(conn_id: str) -> tuple[Any, MongoClient[Any]]:
    """Build the Airflow ``MongoHook`` and its client (no network I/O until the first command)."""
    try:
        from airflow.providers.mongo.hooks.mongo import MongoHook
    except ImportError as err:
        raise ConfigurationError(
            f"connection {conn_id!r} is a mongo connection but apache-airflow-providers-mongo is not "
            f"installed; pip install 'flamingock-provider[mongo]'"
        ) from err
    try:
        hook = MongoHook(mongo_conn_id=conn_id)
        return hook, hook.get_conn()
    except Exception as err:
        raise ConfigurationError(
            f"cannot use mongo connection {conn_id!r}: {type(err).__name__}: {err}; fix the connection "
            f"(conn_type 'mongo', host, port, schema)"
        ) from err


class MongoTargetSession:
    """A unit's session on one MongoDB database. The engine begins, commits and rolls back."""

    kind = "mongo"
    supports_transactions = True

    def __init__(
        self,
        client: MongoClient[Any],
        database: Database[Any],
        config: TargetConfig,
        *,
        hook: Any = None,
        shared_session: Callable[[], ClientSession] | None = None,
        owns_client: bool = True,
    ) -> None:
        self.mongo_client = client
        self.native = database
        self.config = config
        self.hook = hook
        self.session: ClientSession | None = None  # set only while a transaction is open
        self._shared = shared_session
        self._own: ClientSession | None = None
        self._owns_client = owns_client

    def client_session(self) -> ClientSession:
        """The ``ClientSession`` transactions run in: the audit store's when shared, else our own."""
        if self._shared is not None:
            return self._shared()
        if self._own is None:
            self._own = self.mongo_client.start_session()
        return self._own

    def client(self, service: str) -> Any:
        raise ConfigurationError(
            f"target {self.config.name!r} is MongoDB: ctx.client({service!r}) needs an 'aws' connection; "
            f"use ctx.target (a pymongo Database) and ctx.session instead"
        )

    def begin(self) -> None:
        session = self.client_session()
        session.start_transaction(write_concern=self.native.write_concern)
        self.session = session

    def commit(self) -> None:
        from pymongo.errors import PyMongoError

        session, self.session = self.session, None
        if session is None:
            return
        try:
            session.commit_transaction()
        except PyMongoError as err:
            raise StoreError(
                f"target {self.config.name!r}: committing the transaction failed ({err}); if the result is "
                f"unknown, the next run reconciles it from the audit log and the marker — run again"
            ) from err

    def rollback(self) -> None:
        session, self.session = self.session, None
        if session is not None and session.in_transaction:
            session.abort_transaction()

    def write_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        marker = {
            "pipeline": pipeline,
            "change_id": change_id,
            "execution_id": execution_id,
            "created_at": datetime.now(timezone.utc),
        }
        self.native[MARKER_TABLE].insert_one(marker, session=self.session)

    def has_marker(self, pipeline: str, change_id: str, execution_id: str) -> bool:
        query = {"pipeline": pipeline, "change_id": change_id, "execution_id": execution_id}
        return self.native[MARKER_TABLE].find_one(query, {"_id": 1}) is not None

    def close(self) -> None:
        self.rollback()
        own, self._own = self._own, None
        if own is not None:
            own.end_session()
        if self._owns_client:
            self.mongo_client.close()


def open_mongo_target(config: TargetConfig, conn: Any) -> MongoTargetSession:
    """Open a session on the database a ``mongo`` connection (and ``targets.<name>.database``) names."""
    name = database_name(config.conn_id, config.database, conn.schema, f"target {config.name!r}")
    hook, client = connect(config.conn_id)
    database = client.get_database(name, write_concern=write_concern(conn.extra_dejson))
    return MongoTargetSession(client, database, config, hook=hook)
