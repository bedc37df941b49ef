"""The reliability suite's own servers: they stop and start again on the same port, keeping their data.

The shared session fixtures stay untouched: an outage scenario stops these instances, never theirs.

- :class:`DurableMongoServer`: ``tests/fixtures/mongo_server.py``'s server with ``durable=True`` (a
  SIGKILLed server keeps every committed write), on the port of its first start.
- :class:`RestartableMoto`: ``start_moto`` of ``tests/fixtures/moto_server.py`` in this process; its
  data lives in moto's backends, so a restart on the same port keeps it.
- Redis: ``local_redis`` of ``tests/fixtures/redis_server.py``, which stops and starts on one port.
- PostgreSQL and MariaDB: the fixtures' server classes stop and start on one port, keeping their data.

"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.fixtures.mongo_server import MongoServer
from tests.fixtures.moto_server import HOST, MotoServer, start_moto
from tests.fixtures.redis_server import RedisServer, local_redis


class DurableMongoServer(MongoServer):
    """SecantusDB that survives a SIGKILL with its data and comes back on the same port."""

    def __init__(self, storage: Path) -> None:
        super().__init__(storage, durable=True)


class RestartableMoto:
    """A moto server that an outage scenario stops and starts again on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: Any = None

    @property
    def api(self) -> MotoServer:
        return MotoServer(f"http://{HOST}:{self.port}")

    def start(self) -> RestartableMoto:
        server = start_moto(self.port)
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
            workdir = self.root / "redis"
            workdir.mkdir(parents=True, exist_ok=True)
            self._redis = local_redis(workdir)  # LookupError when redis-server is not installed
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
