"""The reliability suite's own servers: they stop and start again on the same port, keeping their data.

The shared session fixtures stay untouched: an outage scenario stops these instances, never theirs.

- :class:`DurableMongoServer`: SecantusDB with ``durable=True, sync_on_commit=True`` (a SIGKILLed
  server keeps every committed write) on a fixed port after its first start.
- :class:`RestartableMoto`: ``ThreadedMotoServer`` in this process, one request at a time as in
  ``tests/fixtures/moto_server.py``; its data lives in moto's backends, so a restart keeps it.
- Redis: :class:`tests.fixtures.redis_server.RedisServer` already stops and starts on one port.
- PostgreSQL and MariaDB: the fixtures' server classes stop and start on one port, keeping their data.

"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fixtures.mongo_server import MongoServer
from tests.fixtures.moto_server import HOST, MotoServer, serialized
from tests.fixtures.redis_server import RedisServer, free_port

# The SecantusDB child: serves until its stdin closes (or it is killed: durable, nothing is lost).
_MONGO_CHILD = """
import sys
from secantus import SecantusDBServer
server = SecantusDBServer(storage_path=sys.argv[1], port=int(sys.argv[2]), durable=True, sync_on_commit=True)
server.start()
print(server.uri, flush=True)
try:
    sys.stdin.read()
finally:
    server.stop()
"""


class DurableMongoServer(MongoServer):
    """SecantusDB that survives a SIGKILL with its data and comes back on the same port."""

    def __init__(self, storage: Path) -> None:
        super().__init__(storage)
        self.port = 0

    def start(self) -> DurableMongoServer:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _MONGO_CHILD, str(self.storage), str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("mongodb://"):
            self.stop()
            raise RuntimeError(f"durable SecantusDB did not start (said {line!r})")
        self.uri = line
        self.port = self.address[1]
        return self


class RestartableMoto:
    """A moto server that an outage scenario stops and starts again on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: Any = None

    @property
    def api(self) -> MotoServer:
        return MotoServer(f"http://{HOST}:{self.port}")

    def start(self) -> RestartableMoto:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        server.start()
        wsgi = server._server
        assert wsgi is not None
        wsgi.app = serialized(wsgi.app)
        self.port = int(server.get_host_and_port()[1])
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()


class Servers:
    """Each server started on first use; ``close()`` stops what was started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._mongo: DurableMongoServer | None = None
        self._moto: RestartableMoto | None = None
        self._redis: RedisServer | None = None
        self._postgres: Any = None
        self._mariadb: Any = None

    def mongo(self) -> DurableMongoServer:
        if self._mongo is None:
            storage = self.root / "secantus"
            storage.mkdir(parents=True, exist_ok=True)
            self._mongo = DurableMongoServer(storage).start()
        return self._mongo

    def moto(self) -> RestartableMoto:
        if self._moto is None:
            self._moto = RestartableMoto().start()
        return self._moto

    def redis(self) -> RedisServer:
        if self._redis is None:
            binary = shutil.which("redis-server")
            if binary is None:
                raise LookupError("redis-server is not installed (scripts/system_deps.sh installs it)")
            workdir = self.root / "redis"
            workdir.mkdir(parents=True, exist_ok=True)
            server = RedisServer(binary, workdir, free_port())
            server.start()
            self._redis = server
        return self._redis

    def postgres(self) -> Any:
        if self._postgres is None:
            from tests.fixtures.postgres_server import start_postgres

            self._postgres = start_postgres()
            if self._postgres is None:
                raise LookupError("PostgreSQL is not installed (scripts/system_deps.sh installs it)")
        return self._postgres

    def mariadb(self) -> Any:
        if self._mariadb is None:
            from tests.fixtures.mariadb_server import start_mariadb

            self._mariadb = start_mariadb()
            if self._mariadb is None:
                raise LookupError("MariaDB is not installed (scripts/system_deps.sh installs it)")
        return self._mariadb

    def close(self) -> None:
        for server in (self._mongo, self._moto, self._redis, self._mariadb):
            if server is not None:
                server.stop()
        if self._postgres is not None:
            self._postgres.stop("immediate")
        for sql in (self._postgres, self._mariadb):
            if sql is not None:
                shutil.rmtree(sql.workdir, ignore_errors=True)
