"""Mongo connections read from ``AIRFLOW_CONN_*``: pymongo clients built as ``MongoHook`` builds them, no Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider.core.model import TargetConfig
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.targets import open_target
from flamingock_provider.targets.connections import parse_env_connection
from flamingock_provider.targets.mongo import client_args, open_mongo_target
from tests.conftest import REPO
from tests.fixtures.mongo_server import CONN_ID, MongoDatabase

CATALOG = REPO / "dags" / "changes" / "catalog"

# apply the example, then `flamingock status`; report the Airflow modules the process imported
CLI_RUN = """\
import json, sys
from flamingock_provider import commands
from flamingock_provider.cli.main import main

applied = commands.apply(sys.argv[1])
code = main(["status", sys.argv[1], "--json"])
airflow = sorted(m for m in sys.modules if m.split(".")[0] == "airflow")
with open(sys.argv[2], "w") as out:
    json.dump({"applied": applied["applied"], "failed": applied["failed"], "code": code, "airflow": airflow}, out)
"""


def test_apply_and_status_on_an_env_connection_never_import_airflow(tmp_path: Path, mongo_conn: MongoDatabase) -> None:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-c", CLI_RUN, str(CATALOG), str(report)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(report.read_text())
    assert result["failed"] is None and len(result["applied"]) == 9 and result["code"] == 0
    status = json.loads(proc.stdout)  # what `flamingock status --json` printed
    assert {c["state"] for c in status["changes"]} == {"APPLIED"} and len(status["changes"]) == 9
    assert result["airflow"] == []
    assert mongo_conn.db.products.count_documents({}) == 4  # the changes reached the server


# AIRFLOW_CONN_* values, JSON and URI forms
CONNECTIONS = {
    "credentials and options": {
        "conn_type": "mongo",
        "host": "db.example.com",
        "port": 27017,
        "schema": "shop",
        "login": "app user",
        "password": "p@ss/word:1",
        "extra": {"replicaSet": "rs0", "authSource": "admin", "w": 1, "connectTimeoutMS": 2500},
    },
    "srv with tls": {
        "conn_type": "mongo",
        "host": "cluster0.example.net",
        "schema": "shop",
        "login": "app",
        "password": "secret",
        "extra": {"srv": True, "tls": True, "authSource": "admin", "retryWrites": "true"},
    },
    "ssl allowing invalid certificates": {
        "conn_type": "mongo",
        "host": "db.example.com",
        "port": 27018,
        "extra": {"ssl": "true", "allow_insecure": "true"},
    },
    "tls allowing invalid certificates": {
        "conn_type": "mongo",
        "host": "db.example.com",
        "extra": {"tls": True, "allow_insecure": True, "tlsCAFile": "/etc/ssl/ca.pem"},
    },
    "allow_insecure without ssl": {"conn_type": "mongo", "host": "db.example.com", "extra": {"allow_insecure": True}},
    "login without password": {"conn_type": "mongo", "host": "db.example.com", "login": "app", "schema": "shop"},
    "uri form": "mongo://app%20user:p%40ss@db.example.com:27017/shop?replicaSet=rs0&ssl=true&allow_insecure=true",
}


class RecordedClient:
    """Stands in for ``MongoClient`` inside ``MongoHook``: records what the hook would connect with."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, uri: str, **options: Any) -> None:
        self.calls.append((uri, options))


@pytest.mark.parametrize("raw", CONNECTIONS.values(), ids=CONNECTIONS.keys())
def test_client_args_match_what_mongo_hook_builds(raw: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.mongo.hooks import mongo as mongo_hooks

    text = raw if isinstance(raw, str) else json.dumps(raw)
    monkeypatch.setenv("AIRFLOW_CONN_PARITY", text)
    monkeypatch.setattr(mongo_hooks, "MongoClient", RecordedClient)
    RecordedClient.calls = []
    mongo_hooks.MongoHook(mongo_conn_id="parity").get_conn()
    assert client_args(parse_env_connection("parity", text)) == RecordedClient.calls[0]


def test_srv_with_a_port_is_refused_as_mongo_hook_does(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = json.dumps({"conn_type": "mongo", "host": "cluster0.example.net", "port": 27017, "extra": {"srv": True}})
    monkeypatch.setenv("AIRFLOW_CONN_SRV_PORT", raw)
    with pytest.raises(ConfigurationError, match="cannot use mongo connection 'srv_port'.*srv URI should not"):
        open_target(TargetConfig("catalog", "srv_port", database="shop"))


def test_the_client_honours_the_extras(mongo_conn: MongoDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    host, port = mongo_conn.server.address
    extra = {"appname": "flamingock-tests", "maxPoolSize": 7, "connectTimeoutMS": 2500, "ssl": "false", "w": 1}
    conn = {"conn_type": "mongo", "host": host, "port": port, "schema": mongo_conn.name, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    target = open_target(TargetConfig("catalog", CONN_ID))
    try:
        client = target.mongo_client  # type: ignore[attr-defined]
        assert client.options.pool_options.max_pool_size == 7
        assert client.options.pool_options.connect_timeout == 2.5
        assert client.options.pool_options.metadata["application"] == {"name": "flamingock-tests"}
        assert target.native.name == mongo_conn.name and target.native.write_concern.document == {"w": 1}
        assert target.native.command("ping")["ok"] == 1
        hook = target.hook  # built on first access, sharing the target's client
        assert hook.get_conn() is client and hook.uri == f"mongodb://{host}:{port}/{mongo_conn.name}"
        assert target.hook is hook
    finally:
        target.close()


def test_an_airflow_connection_still_goes_through_mongo_hook(mongo_conn: MongoDatabase) -> None:
    from airflow.providers.mongo.hooks.mongo import MongoHook
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(CONN_ID)  # Airflow's own object, as a custom secrets backend returns
    target = open_mongo_target(TargetConfig("catalog", CONN_ID), conn)
    try:
        assert isinstance(target.hook, MongoHook) and target.hook.get_conn() is target.mongo_client
        assert target.native.name == mongo_conn.name and target.native.command("ping")["ok"] == 1
    finally:
        target.close()
