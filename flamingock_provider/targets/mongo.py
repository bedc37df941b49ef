"""MongoDB targets: ``ctx.target`` is a pymongo ``Database``, ``ctx.session`` its transaction's ``ClientSession``.

The client is built when a unit runs (never at parse time). A connection read from its
``AIRFLOW_CONN_*`` variable (:class:`~flamingock_provider.targets.connections.EnvConnection`) gets
its pymongo client straight from the connection's fields, as the mongo provider's ``MongoHook``
builds it, so the CLI never imports Airflow; its ``MongoHook`` (``ctx.hook``) is built on first
access. Any other connection goes through ``MongoHook``. Writes default to majority write concern
unless the connection's extras set ``w``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import quote_plus, urlunsplit

from flamingock_provider.core.model import TargetConfig
from flamingock_provider.core.targets import marker_table
from flamingock_provider.exceptions import ConfigurationError, StoreError
from flamingock_provider.targets.connections import EnvConnection

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


HookFactory = Callable[[], Any]
T = TypeVar("T")


def client_args(conn: Any) -> tuple[str, dict[str, Any]]:
    """Return the URI and ``MongoClient`` options that ``MongoHook`` builds from a connection's fields.

    As apache-airflow-providers-mongo does: ``srv`` picks ``mongodb+srv://``, the schema is the URI's
    default database, ``allow_insecure`` (only with ``ssl``/``tls``) becomes ``tlsAllowInvalidCertificates``
    and every other extra (``replicaSet``, ``authSource``, ``tls``, ``w``, ...) is a client option as is.
    """
    extras = dict(conn.extra_dejson)
    if conn.port and extras.get("srv"):
        raise ValueError("srv URI should not specify a port")
    scheme = "mongodb+srv" if extras.pop("srv", False) else "mongodb"
    netloc = conn.host
    if conn.login is not None and conn.password is not None:
        netloc = f"{quote_plus(conn.login)}:{quote_plus(conn.password)}@{netloc}"
    if conn.port:
        netloc = f"{netloc}:{conn.port}"
    uri = urlunsplit((scheme, netloc, f"/{conn.schema}" if conn.schema else "", "", ""))
    allow_insecure = str(extras.pop("allow_insecure", "false")).lower() == "true"
    ssl = any(str(extras.get(key, "false")).lower() == "true" for key in ("ssl", "tls"))
    if ssl and allow_insecure:
        extras.pop("ssl", None)
        extras["tlsAllowInvalidCertificates"] = True
    return uri, extras


def connect(conn: Any) -> tuple[HookFactory, MongoClient[Any]]:
    """Build the connection's client (no network I/O until the first command) and a getter of its hook."""
    if isinstance(conn, EnvConnection):
        client = _guarded(conn.conn_id, lambda: _env_client(conn))
        return _LazyHook(conn.conn_id, client), client
    hook = _guarded(conn.conn_id, lambda: _mongo_hook(conn.conn_id))
    client = _guarded(conn.conn_id, hook.get_conn)
    return lambda: hook, client


def _env_client(conn: EnvConnection) -> MongoClient[Any]:
    from pymongo import MongoClient

    uri, options = client_args(conn)
    return MongoClient(uri, **options)


def _mongo_hook(conn_id: str) -> Any:
    from airflow.providers.mongo.hooks.mongo import MongoHook

    return MongoHook(mongo_conn_id=conn_id)


def _guarded(conn_id: str, build: Callable[[], T]) -> T:
    """Run ``build``; a missing provider or a bad connection becomes a ConfigurationError."""
    try:
        return build()
    except ImportError as err:
        raise ConfigurationError(
            f"connection {conn_id!r} is a mongo connection but apache-airflow-providers-mongo is not "
            f"installed; pip install 'flamingock-provider[mongo]'"
        ) from err
    except Exception as err:
        raise ConfigurationError(
            f"cannot use mongo connection {conn_id!r}: {type(err).__name__}: {err}; fix the connection "
            f"(conn_type 'mongo', host, port, schema)"
        ) from err


class _LazyHook:
    """The connection's ``MongoHook``, built on first call; its ``get_conn()`` returns our client."""

    def __init__(self, conn_id: str, client: MongoClient[Any]) -> None:
        self._conn_id = conn_id
        self._client = client
        self._hook: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._hook is None:
                hook = _guarded(self._conn_id, lambda: _mongo_hook(self._conn_id))
                hook.client = self._client  # one client per connection, as when the hook built it
                self._hook = hook
            return self._hook


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
        hook_factory: HookFactory | None = None,
        shared_session: Callable[[], ClientSession] | None = None,
        owns_client: bool = True,
    ) -> None:
        self.mongo_client = client
        self.native = database
        self.config = config
        self._hook_factory = hook_factory
        self.session: ClientSession | None = None  # set only while a transaction is open
        self._shared = shared_session
        self._own: ClientSession | None = None
        self._owns_client = owns_client

    @property
    def hook(self) -> Any:
        """The connection's ``MongoHook`` (what a Python unit sees as ``ctx.hook``), built on first access."""
        return self._hook_factory() if self._hook_factory is not None else None

    def client_session(self) -> ClientSession:
        """The ``ClientSession`` transactions run in: the audit store's when shared, else our own."""
        if self._shared is not None:
            return self._shared()
        if self._own is None:
            self._own = self.mongo_client.start_session()
        return self._own

    def client(self, service: str) -> NoReturn:
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
        self.native[marker_table(self.config)].insert_one(marker, session=self.session)

    def has_marker(self, pipeline: str, change_id: str, execution_id: str) -> bool:
        query = {"pipeline": pipeline, "change_id": change_id, "execution_id": execution_id}
        return self.native[marker_table(self.config)].find_one(query, {"_id": 1}) is not None

    def clear_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        query = {"pipeline": pipeline, "change_id": change_id, "execution_id": execution_id}
        self.native[marker_table(self.config)].delete_many(query)

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
    hook_factory, client = connect(conn)
    database = client.get_database(name, write_concern=write_concern(conn.extra_dejson))
    return MongoTargetSession(client, database, config, hook_factory=hook_factory)
