"""Shared helpers of the bench scripts: machine details, the test servers, timers and store-call counters.

The servers are the test suite's own (``tests/fixtures``): SecantusDB in a child process and the
moto server (serialized, one request at a time) in a thread of the bench process. The counters count
what one run sends to the audit store, each the way its driver exposes it: a SQLite trace callback on
the store's connections, pymongo command monitoring, botocore ``before-parameter-build`` events.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

T = TypeVar("T")
# Audit log, latest pointers and lease: every table/collection name the stores use starts so.
STORE_PREFIX = "flamingock_"


# Audit log and lease in DynamoDB on the `lake` target's connection: put_items units run TX_SHARED.
DYNAMO_HEADER = "audit: {conn_id: aws_default}\ntargets:\n  lake: {conn_id: aws_default}\ndefault_target: lake\n"


def put_items_unit(n: int, table: str) -> str:
    """The body (after id and author) of a ``dynamodb.put_items`` unit writing one item."""
    return f"template: dynamodb.put_items\napply: {{table: {table}, items: [{{id: i{n}, v: {n}}}]}}\n"


def quiet_airflow_logs() -> None:
    """Warnings only from Airflow, here and in the CLI processes (a line per AWS connection otherwise)."""
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")


# -- machine -------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_details() -> str:
    """One line: CPU model, cores, OS, Python, Airflow and the drivers' versions."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "-"

    drivers = ", ".join(f"{d} {ver(d)}" for d in ("pymongo", "SecantusDB", "boto3", "moto", "alembic"))
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, Airflow {ver('apache-airflow')}, SQLite {_sqlite_version()}; {drivers}"
    )


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def print_title(title: str) -> None:
    print(f"\n== {title}")
    print(machine_details())


# -- timing --------------------------------------------------------------------------------------


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def best_ms(samples: list[float]) -> float:
    """The fastest sample, in ms: the least disturbed by whatever else the machine runs."""
    return min(samples) * 1000


# -- servers -------------------------------------------------------------------------------------


@contextmanager
def mongo_server(storage: Path) -> Iterator[Any]:
    """A SecantusDB server (the tests' ``MongoServer``) for the duration of the block."""
    from tests.fixtures.mongo_server import MongoServer

    server = MongoServer(storage).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def moto_server() -> Iterator[Any]:
    """The tests' moto server (``AIRFLOW_CONN_AWS_DEFAULT`` points at it) for the duration of the block."""
    from tests.fixtures.moto_server import moto_server as fixture

    with contextmanager(fixture.__wrapped__)() as server:  # type: ignore[attr-defined]  # the generator, outside pytest
        yield server


# -- store-call counters -------------------------------------------------------------------------


class SqliteStatements:
    """Counts the statements the embedded store's connections run (``sqlite3`` trace callback)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        from flamingock_provider.stores.sqlite import SqliteStore

        connect = SqliteStore._connect

        def traced(store: SqliteStore) -> Any:
            conn = connect(store)
            conn.set_trace_callback(self._statement)
            return conn

        SqliteStore._connect = traced  # type: ignore[method-assign,assignment]

    def _statement(self, sql: str) -> None:
        self.counts[sql.split(None, 1)[0].upper() if sql.strip() else "?"] += 1


class MongoCommands:
    """Counts commands on the store's collections, and transaction commands (pymongo command monitoring)."""

    SESSION_COMMANDS = frozenset({"commitTransaction", "abortTransaction", "killSessions"})

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        from pymongo import monitoring

        counts = self.counts
        session_commands = self.SESSION_COMMANDS

        class Listener(monitoring.CommandListener):
            def started(self, event: monitoring.CommandStartedEvent) -> None:
                target = event.command.get(event.command_name)
                if isinstance(target, str) and target.startswith(STORE_PREFIX):
                    counts[f"{event.command_name} {target}"] += 1
                elif event.command_name in session_commands:
                    counts[event.command_name] += 1

            def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
                pass

            def failed(self, event: monitoring.CommandFailedEvent) -> None:
                pass

        monitoring.register(Listener())  # applies to clients created from now on


class DynamoCalls:
    """Counts DynamoDB API calls that touch the store's tables (botocore ``before-parameter-build`` events)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        import botocore.session

        create_client = botocore.session.Session.create_client

        def create(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            client = create_client(session, service_name, *args, **kwargs)
            if service_name == "dynamodb":
                client.meta.events.register("before-parameter-build.dynamodb", self._call)
            return client

        botocore.session.Session.create_client = create  # type: ignore[method-assign]

    def _call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if any(t.startswith(STORE_PREFIX) for t in _tables(params)):
            self.counts[model.name] += 1


def _tables(params: dict[str, Any]) -> list[str]:
    tables = [params.get("TableName", "")]
    tables += list(params.get("RequestItems", {}))
    for item in params.get("TransactItems", []):
        tables += [action.get("TableName", "") for action in item.values()]
    return tables


class MotoTableWork:
    """Seconds the moto server spends on work real DynamoDB does not do per call: whole-table copies.

    moto 5's ``transact_write_items`` deep-copies every table it touches (its rollback snapshot), and
    its ``Table.query`` walks every item of the table; both grow with the table, so on moto they grow
    with the audit history. Measured inside the server (it runs in this process), so a bench can
    print its figures with and without them.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def install(self) -> None:
        import copy

        import moto.dynamodb.models as backend
        from moto.dynamodb.models.table import Table

        work = self

        class TimedCopy:
            def __getattr__(self, name: str) -> Any:
                return getattr(copy, name)

            def deepcopy(self, value: Any, memo: Any = None) -> Any:
                if not isinstance(value, Table):
                    return copy.deepcopy(value, memo)
                return work.timed(lambda: copy.deepcopy(value, memo))

        query = Table.query
        backend.copy = TimedCopy()  # type: ignore[assignment]
        Table.query = lambda table, *args, **kwargs: work.timed(lambda: query(table, *args, **kwargs))  # type: ignore[method-assign]

    def timed(self, fn: Callable[[], T]) -> T:
        elapsed, result = timed(fn)
        self.seconds += elapsed
        return result


def calls(counts: Counter[str]) -> int:
    return sum(counts.values())


def breakdown(counts: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
