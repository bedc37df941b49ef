"""The four backends under test, each with targets for every transaction strategy it supports.

A backend names its Airflow connections (``env``, for the runner processes), writes ``pipeline.yaml``
and unit files, and reads the truth back without Airflow: the audit log and the lease straight from
the store, and the *ledger* — one record per application of a unit, written by the unit itself into
its target (``run`` = the execution id that wrote it, ``pid`` = the runner process). Every pipeline has
two targets: ``main`` (another database or connection: TX_SEPARATE) and ``shared`` (the audit
store's own connection: TX_SHARED).

============  ======================  ==================  =====================================
backend       audit store             lease               targets (main / shared)
============  ======================  ==================  =====================================
sqlite        SQLite file             the audit store     target.db / audit.db
mongo         SecantusDB database     the audit store     another database / the audit database
dynamodb      moto server             the audit store     another aws connection / the audit one
redis         SQLite file             Redis               target.db / audit.db
postgres      PostgreSQL database     the audit store     another database / the audit database
mariadb       MariaDB database        the audit store     another database / the audit database
============  ======================  ==================  =====================================
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from flamingock_provider.core.model import AuditEntry, LeaseInfo, TxStrategy
from tests.reliability.servers import DurableMongoServer, RestartableMoto, Servers

LEDGER = "rel_ledger"
NON_TX, TX_SEPARATE, TX_SHARED = TxStrategy.NON_TX, TxStrategy.TX_SEPARATE, TxStrategy.TX_SHARED


@dataclass(frozen=True)
class Record:
    """One application of a unit, as the unit wrote it into its target."""

    run: str
    pid: int | None


Ledger = dict[str, list[Record]]


@dataclass(frozen=True)
class UnitSpec:
    """A unit of a test pipeline: it writes one ledger record, under the given strategy."""

    id: str
    strategy: TxStrategy = NON_TX
    recovery: str = "manual_intervention"
    idempotent: bool = False  # replaces its record instead of adding one (an always_retry-safe unit)
    sleep_s: float = 0.0  # how long its code runs before it writes

    @property
    def target(self) -> str:
        return "shared" if self.strategy is TX_SHARED else "main"


PYTHON_UNIT = """\
import os
import time

from tests.reliability.runner import checkpoint

ID = "{id}"
AUTHOR = "reliability"
TARGET = "{target}"
TRANSACTIONAL = {transactional}
RECOVERY = "{recovery}"


def apply(ctx):
    checkpoint(ID, "before-write")
    time.sleep({sleep_s})
{write}
    checkpoint(ID, "after-write")
"""


class Backend:
    """Connections, files and read-back of one audit-store/lease combination."""

    name: ClassVar[str]
    strategies: ClassVar[tuple[TxStrategy, ...]] = (NON_TX, TX_SEPARATE, TX_SHARED)
    host_clock: ClassVar[bool] = True  # lease expiry compared with the runners' own clocks
    poke_s: ClassVar[float] = 0.1

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = {}

    # -- files -------------------------------------------------------------------------------

    def header(self, pipeline: str, *, lease_s: float, wait_s: float = 300.0) -> str:
        """The pipeline.yaml of ``pipeline`` (its folder name)."""
        lock = f"lease_seconds: {lease_s}, wait_timeout_seconds: {wait_s}, poke_interval_seconds: {self.poke_s}"
        return (
            self.audit_yaml(pipeline)
            + self.targets_yaml()
            + "default_target: main\n"
            + f"lock: {{{lock}{self.lock_extra()}}}\n"
        )

    def audit_yaml(self, pipeline: str) -> str:
        raise NotImplementedError

    def targets_yaml(self) -> str:
        raise NotImplementedError

    def lock_extra(self) -> str:
        return ""

    def unit_file(self, pipeline: str, spec: UnitSpec) -> tuple[str, str]:
        """Return (extension, text) of the unit file."""
        write = self.write_code(spec.idempotent)
        text = PYTHON_UNIT.format(
            id=spec.id,
            target=spec.target,
            transactional=spec.strategy is not NON_TX,
            recovery=spec.recovery,
            sleep_s=spec.sleep_s,
            write=textwrap.indent(write, "    "),
        )
        return "py", text

    def write_code(self, idempotent: bool) -> str:
        """Python lines (inside ``apply(ctx)``) that write the unit's ledger record."""
        raise NotImplementedError

    def python_points(self, spec: UnitSpec) -> bool:
        """True when the unit is a Python file (so ``before-write`` / ``after-write`` exist)."""
        return True

    # -- set-up and read-back ----------------------------------------------------------------

    def prepare(self) -> None:
        """Create the ledger containers."""

    def prepare_pipeline(self, pipeline: str) -> None:
        """Create what one pipeline needs before it runs."""

    def history(self, pipeline: str) -> list[AuditEntry]:
        raise NotImplementedError

    def holder(self, pipeline: str) -> LeaseInfo | None:
        raise NotImplementedError

    def ledger(self, pipeline: str) -> Ledger:
        raise NotImplementedError

    def close(self) -> None:
        """Release clients."""


# -- SQLite (and the Redis lease over a SQLite audit store) ------------------------------------------

SQL_WRITE = (
    "ctx.target.execute(\n"
    f"    'INSERT INTO {LEDGER} VALUES (?, ?, ?, ?)', (ctx.pipeline.id, ID, ctx.execution_id, os.getpid())\n"
    ")"
)
SQL_CLEAR = f"ctx.target.execute('DELETE FROM {LEDGER} WHERE pipeline = ? AND unit = ?', (ctx.pipeline.id, ID))\n"


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.audit_db = root / "audit.db"
        self.target_db = root / "target.db"
        self.env.update(
            AIRFLOW_CONN_REL_AUDIT=f"sqlite:///{self.audit_db}", AIRFLOW_CONN_REL_TARGET=f"sqlite:///{self.target_db}"
        )
        self._store: Any = None

    def audit_yaml(self, pipeline: str) -> str:
        return "audit: {conn_id: rel_audit}\n"

    def targets_yaml(self) -> str:
        return "targets:\n  main: {conn_id: rel_target}\n  shared: {conn_id: rel_audit}\n"

    def write_code(self, idempotent: bool) -> str:
        return (SQL_CLEAR if idempotent else "") + SQL_WRITE

    def prepare(self) -> None:
        for db in (self.audit_db, self.target_db):
            with sqlite3.connect(db) as conn:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {LEDGER} (pipeline TEXT, unit TEXT, run TEXT, pid INTEGER)")

    @property
    def store(self) -> Any:
        from flamingock_provider.stores.sqlite import SqliteStore

        if self._store is None:
            self._store = SqliteStore(self.audit_db, busy_timeout_s=120.0)
        return self._store

    def history(self, pipeline: str) -> list[AuditEntry]:
        return list(self.store.history(pipeline))

    def holder(self, pipeline: str) -> LeaseInfo | None:
        return self.store.current(pipeline)  # type: ignore[no-any-return]

    def ledger(self, pipeline: str) -> Ledger:
        found: Ledger = defaultdict(list)
        for db in (self.target_db, self.audit_db):
            with sqlite3.connect(db, timeout=120) as conn:
                rows = conn.execute(f"SELECT unit, run, pid FROM {LEDGER} WHERE pipeline = ?", (pipeline,)).fetchall()
            for unit, run, pid in rows:
                found[unit].append(Record(run, pid))
        return dict(found)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class RedisBackend(SqliteBackend):
    """The lease in Redis (expiry on the server's clock), the audit log in SQLite."""

    name = "redis"
    host_clock = False

    def __init__(self, root: Path, port: int) -> None:
        super().__init__(root)
        self.port = port
        self.env["AIRFLOW_CONN_REL_REDIS"] = f"redis://127.0.0.1:{port}/0"

    def lock_extra(self) -> str:
        return ", conn_id: rel_redis"

    def holder(self, pipeline: str) -> LeaseInfo | None:
        import redis

        from flamingock_provider.stores.redis_lease import RedisLeaseBackend

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
        try:
            return RedisLeaseBackend(client).current(pipeline)
        finally:
            client.close()


# -- MongoDB ------------------------------------------------------------------------------------------

MONGO_DOC = "{'pipeline': ctx.pipeline.id, 'unit': ID, 'run': ctx.execution_id, 'pid': os.getpid()}"


class MongoBackend(Backend):
    name = "mongo"
    host_clock = False

    def __init__(self, root: Path, server: DurableMongoServer) -> None:
        super().__init__(root)
        self.server = server
        self.database = f"rel_{uuid.uuid4().hex[:10]}"
        self.target_database = f"{self.database}_t"
        host, port = server.address
        extra = {"serverSelectionTimeoutMS": 3000, "connectTimeoutMS": 3000}
        conn = {"conn_type": "mongo", "host": host, "port": port, "schema": self.database, "extra": extra}
        self.env["AIRFLOW_CONN_REL_MONGO"] = json.dumps(conn)
        self._client: Any = None

    def audit_yaml(self, pipeline: str) -> str:
        return "audit: {conn_id: rel_mongo}\n"

    def targets_yaml(self) -> str:
        return f"targets:\n  main: {{conn_id: rel_mongo, database: {self.target_database}}}\n  shared: {{conn_id: rel_mongo}}\n"

    def write_code(self, idempotent: bool) -> str:
        if idempotent:
            return (
                f"ctx.target[{LEDGER!r}].replace_one(\n"
                f"    {{'_id': ctx.pipeline.id + '/' + ID}}, {MONGO_DOC}, upsert=True, session=ctx.session\n"
                ")"
            )
        return f"ctx.target[{LEDGER!r}].insert_one({MONGO_DOC}, session=ctx.session)"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.server.client()
        return self._client

    def prepare(self) -> None:
        for name in (self.database, self.target_database):
            if LEDGER not in self.client[name].list_collection_names():
                self.client[name].create_collection(LEDGER)

    def _store(self) -> Any:
        from flamingock_provider.stores.mongo import MongoStore

        return MongoStore(lambda: (None, self.server.client()), self.database)

    def history(self, pipeline: str) -> list[AuditEntry]:
        store = self._store()
        try:
            return list(store.history(pipeline))
        finally:
            store.close()

    def holder(self, pipeline: str) -> LeaseInfo | None:
        store = self._store()
        try:
            return store.current(pipeline)  # type: ignore[no-any-return]
        finally:
            store.close()

    def ledger(self, pipeline: str) -> Ledger:
        found: Ledger = defaultdict(list)
        for name in (self.database, self.target_database):
            for doc in self.client[name][LEDGER].find({"pipeline": pipeline}):
                found[doc["unit"]].append(Record(doc["run"], doc.get("pid")))
        return dict(found)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# -- DynamoDB -----------------------------------------------------------------------------------------

AWS_KEY = "{'pipeline': {'S': ctx.pipeline.id}, 'unit': {'S': ID}}"
AWS_VALUES = "{':one': {'N': '1'}, ':run': {'S': ctx.execution_id}, ':pid': {'N': str(os.getpid())}}"
AWS_LEDGER = "'ledger_' + ctx.pipeline.id"
DYNAMO_TX_UNIT = """\
id: {id}
author: reliability
target: {target}
transactional: true
template: dynamodb.put_items
apply:
  table: ledger_{pipeline}
  items:
    - {{pipeline: {pipeline}, unit: {id}, n: 1, run: "{{{{ run_id }}}}"}}
"""


class DynamoBackend(Backend):
    """Audit log and lease in DynamoDB; Python units are NON_TX here, so TX units use ``dynamodb.put_items``.

    Each pipeline gets its own audit and ledger tables: the moto server deep-copies every table a
    TransactWriteItems touches (to undo it on failure), so one growing table would slow every audit
    write of the session down, and with it the heartbeats (real DynamoDB does no such thing).
    """

    name = "dynamodb"
    poke_s = 0.25  # the moto server answers one request at a time: do not flood it with polls

    def __init__(self, root: Path, moto: RestartableMoto) -> None:
        super().__init__(root)
        self.moto = moto
        connection = moto.api.connection
        retries = {"retries": {"max_attempts": 2, "mode": "standard"}, "connect_timeout": 3, "read_timeout": 60}
        connection["extra"] = {**connection["extra"], "config_kwargs": retries}
        self.env["AIRFLOW_CONN_REL_AWS"] = json.dumps(connection)
        self.env["AIRFLOW_CONN_REL_AWS_TARGET"] = json.dumps(connection)

    def audit_yaml(self, pipeline: str) -> str:
        return f"audit: {{conn_id: rel_aws, table: audit_{pipeline}}}\n"

    def targets_yaml(self) -> str:
        return "targets:\n  main: {conn_id: rel_aws_target}\n  shared: {conn_id: rel_aws}\n"

    def unit_file(self, pipeline: str, spec: UnitSpec) -> tuple[str, str]:
        if spec.strategy is NON_TX:
            return super().unit_file(pipeline, spec)
        return "yaml", DYNAMO_TX_UNIT.format(id=spec.id, target=spec.target, pipeline=pipeline)

    def python_points(self, spec: UnitSpec) -> bool:
        return spec.strategy is NON_TX

    def write_code(self, idempotent: bool) -> str:
        if idempotent:
            item = (
                "{**" + AWS_KEY + ", 'n': {'N': '1'}, 'run': {'S': ctx.execution_id}, 'pid': {'N': str(os.getpid())}}"
            )
            return f"ctx.client('dynamodb').put_item(TableName={AWS_LEDGER}, Item={item})"
        return (
            "ctx.client('dynamodb').update_item(\n"
            f"    TableName={AWS_LEDGER}, Key={AWS_KEY},\n"
            "    UpdateExpression='ADD n :one SET run = :run, pid = :pid',\n"
            f"    ExpressionAttributeValues={AWS_VALUES},\n"
            ")"
        )

    def prepare_pipeline(self, pipeline: str) -> None:
        from flamingock_provider.targets.aws import KeyAttr, ensure_table

        client = self.moto.api.client("dynamodb")
        ensure_table(client, f"ledger_{pipeline}", KeyAttr("pipeline", "S"), KeyAttr("unit", "S"))

    def _store(self, pipeline: str) -> Any:
        from flamingock_provider.stores.dynamodb import DynamoDBStore

        return DynamoDBStore(self.moto.api.client("dynamodb"), table=f"audit_{pipeline}")

    def history(self, pipeline: str) -> list[AuditEntry]:
        return list(self._store(pipeline).history(pipeline))

    def holder(self, pipeline: str) -> LeaseInfo | None:
        return self._store(pipeline).current(pipeline)  # type: ignore[no-any-return]

    def ledger(self, pipeline: str) -> Ledger:
        items = self.moto.api.client("dynamodb").scan(TableName=f"ledger_{pipeline}", ConsistentRead=True)["Items"]
        found: Ledger = {}
        for item in items:
            pid = int(item["pid"]["N"]) if "pid" in item else None
            found[item["unit"]["S"]] = [Record(item["run"]["S"], pid)] * int(item["n"]["N"])
        return found


# -- PostgreSQL and MariaDB ---------------------------------------------------------------------------

DBAPI_WRITE = (
    "cur = ctx.target.cursor()\n"
    f"cur.execute('INSERT INTO {LEDGER} VALUES (%s, %s, %s, %s)', (ctx.pipeline.id, ID, ctx.execution_id, os.getpid()))"
)
DBAPI_CLEAR = (
    "ctx.target.cursor().execute(\n"
    f"    'DELETE FROM {LEDGER} WHERE pipeline = %s AND unit = %s', (ctx.pipeline.id, ID)\n"
    ")\n"
)


class SqlServerBackend(Backend):
    """Audit log and lease in one database of a real PostgreSQL or MariaDB server (expiry on its clock)."""

    host_clock = False

    def __init__(self, root: Path, name: str, server: Any) -> None:
        super().__init__(root)
        self.name = name  # type: ignore[misc]
        self.server = server
        self.database = f"rel_{uuid.uuid4().hex[:10]}"
        self.target_database = f"{self.database}_t"
        self.env["AIRFLOW_CONN_REL_SQL"] = server.uri(self.database)
        self.env["AIRFLOW_CONN_REL_SQL_TARGET"] = server.uri(self.target_database)

    def audit_yaml(self, pipeline: str) -> str:
        return "audit: {conn_id: rel_sql}\n"

    def targets_yaml(self) -> str:
        return "targets:\n  main: {conn_id: rel_sql_target}\n  shared: {conn_id: rel_sql}\n"

    def write_code(self, idempotent: bool) -> str:
        return (DBAPI_CLEAR if idempotent else "") + DBAPI_WRITE

    def prepare(self) -> None:
        for name in (self.database, self.target_database):
            self.server.create_database(name)
            conn = self.server.connect(name)
            try:
                conn.cursor().execute(
                    f"CREATE TABLE {LEDGER} (pipeline VARCHAR(100), unit VARCHAR(100), run VARCHAR(64), pid INT)"
                )
            finally:
                conn.close()

    def _store(self) -> Any:
        from flamingock_provider.core.model import AuditConfig
        from flamingock_provider.stores.sql import open_sql_store
        from flamingock_provider.targets.connections import parse_env_connection

        uri = self.env["AIRFLOW_CONN_REL_SQL"]
        return open_sql_store(AuditConfig(conn_id="rel_sql"), parse_env_connection("rel_sql", uri))

    def history(self, pipeline: str) -> list[AuditEntry]:
        store = self._store()
        try:
            return list(store.history(pipeline))
        finally:
            store.close()

    def holder(self, pipeline: str) -> LeaseInfo | None:
        store = self._store()
        try:
            return store.current(pipeline)  # type: ignore[no-any-return]
        finally:
            store.close()

    def ledger(self, pipeline: str) -> Ledger:
        found: Ledger = defaultdict(list)
        for name in (self.database, self.target_database):
            conn = self.server.connect(name)
            try:
                cur = conn.cursor()
                cur.execute(f"SELECT unit, run, pid FROM {LEDGER} WHERE pipeline = %s", (pipeline,))
                for unit, run, pid in cur.fetchall():
                    found[unit].append(Record(run, pid))
            finally:
                conn.close()
        return dict(found)


BACKENDS: Sequence[str] = ("sqlite", "mongo", "dynamodb", "redis", "postgres", "mariadb")


def make_backend(name: str, root: Path, servers: Servers) -> Backend:
    """Build and prepare the backend ``name`` under ``root`` on the suite's own servers."""
    backend: Backend
    if name == "sqlite":
        backend = SqliteBackend(root)
    elif name == "redis":
        backend = RedisBackend(root, servers.redis().port)
    elif name == "mongo":
        backend = MongoBackend(root, servers.mongo())
    elif name == "dynamodb":
        backend = DynamoBackend(root, servers.moto())
    elif name in ("postgres", "mariadb"):
        backend = SqlServerBackend(root, name, servers.postgres() if name == "postgres" else servers.mariadb())
    else:
        raise ValueError(f"unknown backend {name!r}; one of {', '.join(BACKENDS)}")
    backend.prepare()
    return backend
