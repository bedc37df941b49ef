"""How each backend's store goes down in the outage scenario, and what the ``FAILED:`` line must name.

- SQLite: another process holds an EXCLUSIVE transaction on the audit file for longer than the store's
  busy timeout (60 s), then lets go: the runner's next write fails with "database is locked".
- MongoDB: the durable SecantusDB is SIGKILLed, then started again on its port with its data.
- DynamoDB: the moto server is stopped, then started again on its port (moto keeps the tables).
- Redis: ``redis-server`` is stopped and started again (no persistence: the lease is gone after it).
- PostgreSQL / MariaDB: the server is stopped (open connections and transactions end) and started again.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.reliability.backends import (
    Backend,
    DynamoBackend,
    MongoBackend,
    RedisBackend,
    SqliteBackend,
    SqlServerBackend,
)
from tests.reliability.scenarios import Outage
from tests.reliability.servers import Servers

SQLITE_BUSY_S = 60.0  # SqliteStore's busy timeout: a writer waits that long for a lock
LOCK_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


class SqliteLock:
    """Another process that locks a SQLite file EXCLUSIVE for ``hold_s`` seconds."""

    def __init__(self, path: Path, hold_s: float) -> None:
        self.path = path
        self.hold_s = hold_s
        self._process: subprocess.Popen[str] | None = None

    def lock(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, str(self.path), str(self.hold_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        assert line == "locked", f"could not lock {self.path}: {line!r}"

    def unlock(self, *, now: bool = False) -> None:
        """Wait for the holder to let go by itself (or kill it ``now``)."""
        process, self._process = self._process, None
        if process is None:
            return
        if now:
            process.kill()
        process.wait(timeout=self.hold_s + 60)
        assert process.stdout is not None
        process.stdout.close()


def outage_for(backend: Backend, servers: Servers) -> Outage:
    if isinstance(backend, RedisBackend):
        redis = servers.redis()
        return Outage(redis.stop, redis.start, f"Redis lease store 127.0.0.1:{redis.port}")
    if isinstance(backend, SqliteBackend):
        lock = SqliteLock(backend.audit_db, SQLITE_BUSY_S + 5)
        return Outage(lock.lock, lock.unlock, f"audit store {str(backend.audit_db)!r} failed: database is locked")
    if isinstance(backend, MongoBackend):
        mongo = servers.mongo()
        return Outage(mongo.stop, mongo.start, "MongoDB audit store 'rel_mongo'")
    if isinstance(backend, DynamoBackend):
        moto = servers.moto()
        return Outage(moto.stop, moto.start, "DynamoDB unreachable")
    if isinstance(backend, SqlServerBackend):
        server = backend.server
        dialect = "postgres" if backend.name == "postgres" else "mysql"
        return Outage(server.stop, server.start, f"audit store 'rel_sql' ({dialect} at 127.0.0.1:{server.port})")
    raise ValueError(f"no outage for {backend.name}")
