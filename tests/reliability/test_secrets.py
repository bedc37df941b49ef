"""Secrets (issue 8, item 7): connection passwords and tokens never show up in what flamingock writes.

Secrets are planted in the passwords and extras of the sqlite, http, redis, mongo and aws connections
(each one really used: the Redis server and SecantusDB require them, the HTTP API records the basic-auth
header). Then apply (ok, then failing), undo, fix, unlock, history, status, plan and validate run with
``--json`` and in human form, some with ``-v`` and ``--traceback``, and with wrong passwords. Every
stdout and stderr, the audit stores (the SQLite files, the MongoDB and DynamoDB audit records) and the
JSON-lines sink are searched for each secret, also base64- and URL-encoded.

XCom, task logs and the Airflow UI belong to the Airflow integration's tests.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import write_tree
from tests.fixtures.http_api import HttpApi
from tests.reliability.backends import DynamoBackend, MongoBackend
from tests.reliability.pool import Runner, RunnerPool
from tests.reliability.servers import Servers

SECRETS = {name: f"{name}-{uuid.uuid4().hex[:12]}" for name in ("sqlpw", "sqltok", "httppw", "httptok", "redispw")}
SECRETS |= {name: f"{name}-{uuid.uuid4().hex[:12]}" for name in ("mongopw", "awskey", "awstok", "wrongpw")}
HTTP_LOGIN = "svc-flamingock"


def encodings(secret: str) -> list[str]:
    basic = base64.b64encode(f"{HTTP_LOGIN}:{secret}".encode()).decode()
    return sorted({secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode(), basic})


class Evidence:
    """Everything flamingock wrote that a secret must never reach."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def runner(self, run: Runner) -> Runner:
        self.add(f"`flamingock {' '.join(run.argv)}` stdout", run.stdout)
        self.add(f"`flamingock {' '.join(run.argv)}` stderr", run.stderr)
        return run

    def files(self, root: Path) -> None:
        for path in root.rglob("*"):
            if path.is_file():
                self.add(str(path), path.read_bytes().decode("utf-8", "replace"))

    def leaks(self) -> list[str]:
        return [
            f"{name} ({form!r}) in {where}"
            for name, secret in SECRETS.items()
            for form in encodings(secret)
            for where, text in self.texts
            if form in text
        ]


@pytest.fixture
def redis_password(servers: Servers) -> Iterator[int]:
    """The suite's Redis server, requiring a password while the test runs."""
    redis = servers.redis()
    client = redis.client()
    client.config_set("requirepass", SECRETS["redispw"])
    try:
        yield redis.port
    finally:
        client = redis.client(password=SECRETS["redispw"])
        client.config_set("requirepass", "")


def sql_env(root: Path, redis_port: int, http: HttpApi, redis_password: str) -> dict[str, str]:
    def sqlite(name: str) -> str:
        return json.dumps(
            {
                "conn_type": "sqlite",
                "host": str(root / name),
                "password": SECRETS["sqlpw"],
                "extra": {"token": SECRETS["sqltok"]},
            }
        )

    api = {
        **http.connection,
        "login": HTTP_LOGIN,
        "password": SECRETS["httppw"],
        "extra": {"X-Api-Token": SECRETS["httptok"]},
    }
    return {
        "AIRFLOW_CONN_SEC_AUDIT": sqlite("audit.db"),
        "AIRFLOW_CONN_SEC_TARGET": sqlite("target.db"),
        "AIRFLOW_CONN_SEC_API": json.dumps(api),
        "AIRFLOW_CONN_SEC_REDIS": f"redis://:{quote(redis_password, safe='')}@127.0.0.1:{redis_port}/0",
        "FLAMINGOCK_AUDIT_SINKS": "jsonl",
        "FLAMINGOCK_AUDIT_JSONL": str(root / "sink" / "audit.jsonl"),
    }


SQL_PIPELINE = {
    "pipeline.yaml": (
        "audit: {conn_id: sec_audit}\nlock: {conn_id: sec_redis, poke_interval_seconds: 0.1}\n"
        "targets:\n  warehouse: {conn_id: sec_target}\n  api: {conn_id: sec_api}\ndefault_target: warehouse\n"
    ),
    "0001_table.yaml": "id: table\nauthor: t\ntemplate: sql\napply: {statements: 'CREATE TABLE t (x INT)'}\n"
    "rollback: {statements: 'DROP TABLE t'}\n",
    "0002_api.yaml": "id: api\nauthor: t\ntarget: api\ntemplate: http.request\n"
    "apply: {method: PUT, endpoint: /v1/settings, json: {retention: 30}}\nrollback: {method: DELETE, endpoint: /v1/settings}\n",
}
FAILING_UNITS = {
    "0003_broken.yaml": "id: broken\nauthor: t\ntemplate: sql\napply: {statements: 'INSERT INTO nope VALUES (1)'}\n",
    "0004_api_down.yaml": "id: api-down\nauthor: t\ntarget: api\ntemplate: http.request\ntransactional: false\n"
    "apply: {method: POST, endpoint: /v1/fail}\nrollback: {method: DELETE, endpoint: /v1/fail}\n",
}


def _ok(run: Runner) -> Runner:
    assert run.wait() == 0, run.describe()
    return run


def every_command(pool: RunnerPool, pipe: Path, env: dict[str, str], evidence: Evidence) -> None:
    """Run the read-only commands in both output forms."""
    for command in (["validate"], ["plan"], ["status"], ["history"]):
        for form in (["--json"], [], ["-v"]):
            evidence.runner(pool.run([*command, str(pipe), *form], env))


def test_secrets_never_leave_the_connections_sql_http_redis(
    runner_pool: RunnerPool,
    tmp_path: Path,
    http_api_server: HttpApi,
    redis_password: int,
) -> None:
    env = sql_env(tmp_path, redis_password, http_api_server, SECRETS["redispw"])
    pipe = write_tree(tmp_path / "sec_sql", SQL_PIPELINE)
    evidence = Evidence()
    http_api_server.reset()
    http_api_server.respond("POST", "/v1/fail", 500, {"error": "quota exceeded"})
    assert evidence.runner(runner_pool.run(["apply", str(pipe), "--json", "-v"], env)).wait() == 0
    assert any(r.headers.get("Authorization", "").startswith("Basic ") for r in http_api_server.requests)
    every_command(runner_pool, pipe, env, evidence)
    write_tree(pipe, FAILING_UNITS)
    for form in (["--json"], ["-v", "--traceback"]):
        assert evidence.runner(runner_pool.run(["apply", str(pipe), *form], env)).wait() == 1
    assert "no such table: nope" in evidence.texts[-2][1] + evidence.texts[-1][1]
    (pipe / "0003_broken.yaml").unlink()
    http_failed = evidence.runner(runner_pool.run(["apply", str(pipe), "--json"], env))
    assert http_failed.wait() == 1 and "quota exceeded" in http_failed.json()["failed"]["error"], http_failed.describe()
    evidence.runner(_ok(runner_pool.run(["fix", str(pipe), "api-down", "--as", "rolled-back", "--json"], env)))
    (pipe / "0004_api_down.yaml").unlink()
    undone = evidence.runner(_ok(runner_pool.run(["undo", str(pipe), "--last", "1", "--json"], env)))
    assert undone.json()["rolled_back"] == ["api"], undone.stdout
    evidence.runner(_ok(runner_pool.run(["undo", str(pipe), "--last", "1", "-v"], env)))
    every_command(runner_pool, pipe, env, evidence)
    evidence.runner(runner_pool.run(["unlock", str(pipe), "--force", "--json"], env))
    wrong = {
        **env,
        "AIRFLOW_CONN_SEC_REDIS": env["AIRFLOW_CONN_SEC_REDIS"].replace(
            quote(SECRETS["redispw"], safe=""), SECRETS["wrongpw"]
        ),
    }
    for form in (["--json"], ["-v", "--traceback"]):
        failed = evidence.runner(runner_pool.run(["apply", str(pipe), *form], wrong))
        assert failed.wait() == 1 and "Redis" in failed.stderr, failed.describe()
    evidence.files(tmp_path)
    assert len(evidence.texts) > 40
    assert evidence.leaks() == []


def test_the_search_finds_a_planted_secret() -> None:
    evidence = Evidence()
    basic = base64.b64encode(f"{HTTP_LOGIN}:{SECRETS['httppw']}".encode()).decode()
    evidence.add("a log", f"Authorization: Basic {basic}")
    evidence.add("a URI", f"redis://:{quote(SECRETS['redispw'], safe='')}@host")
    assert {leak.split(" ")[0] for leak in evidence.leaks()} == {"httppw", "redispw"}


def _history(pool: RunnerPool, pipe: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    return _ok(pool.run(["history", str(pipe), "--json"], env)).json()["entries"]  # type: ignore[no-any-return]


def _dump(records: Any) -> str:
    from bson import json_util

    return json_util.dumps(list(records))


def test_secrets_never_leave_the_connections_mongo_and_aws(
    runner_pool: RunnerPool, tmp_path: Path, servers: Servers
) -> None:
    mongo = MongoBackend(tmp_path / "mongo", servers.mongo())
    dynamo = DynamoBackend(tmp_path / "aws", servers.moto())
    user = f"sec_{uuid.uuid4().hex[:6]}"
    mongo.client.admin.command("createUser", user, pwd=SECRETS["mongopw"], roles=["root"])
    conn = json.loads(mongo.env["AIRFLOW_CONN_REL_MONGO"])
    conn.update(login=user, password=SECRETS["mongopw"])
    conn["extra"]["authSource"] = "admin"
    aws = json.loads(dynamo.env["AIRFLOW_CONN_REL_AWS"])
    aws["password"] = SECRETS["awskey"]
    aws["extra"]["aws_session_token"] = SECRETS["awstok"]
    env = {
        "AIRFLOW_CONN_SEC_MONGO": json.dumps(conn),
        "AIRFLOW_CONN_SEC_AWS": json.dumps(aws),
        "FLAMINGOCK_AUDIT_SINKS": "jsonl",
        "FLAMINGOCK_AUDIT_JSONL": str(tmp_path / "sink" / "audit.jsonl"),
    }
    lock = "lock: {lease_seconds: 10, poke_interval_seconds: 0.1}\n"
    mongo_pipe = write_tree(
        tmp_path / f"sec_mongo_{user}",
        {
            "pipeline.yaml": "audit: {conn_id: sec_mongo}\ntargets:\n  db: {conn_id: sec_mongo}\n" + lock,
            "0001_seed.yaml": "id: seed\nauthor: t\ntemplate: mongo.insert\napply: {collection: c, documents: [{a: 1}]}\n",
            "0002_boom.py": 'ID = "boom"\nAUTHOR = "t"\n\ndef apply(ctx):\n    ctx.target.c.insert_one({"_id": 1})\n'
            '    ctx.target.c.insert_one({"_id": 1}, session=ctx.session)\n',
        },
    )
    aws_pipe = write_tree(
        tmp_path / f"sec_aws_{user}",
        {
            "pipeline.yaml": "audit: {conn_id: sec_aws, table: sec_audit}\ntargets:\n  lake: {conn_id: sec_aws}\n"
            + lock,
            "0001_table.yaml": "id: table\nauthor: t\ntemplate: dynamodb.create_table\n"
            "apply: {table: sec_items, partition_key: {name: id, type: S}}\n",
            "0002_items.yaml": "id: items\nauthor: t\ntemplate: dynamodb.put_items\napply: {table: sec_items, items: [{id: a}]}\n",
        },
    )
    evidence = Evidence()
    for pipe, code in ((mongo_pipe, 1), (aws_pipe, 0)):
        for form in (["--json"], ["-v", "--traceback"]):
            assert evidence.runner(runner_pool.run(["apply", str(pipe), *form], env)).wait() == code
        evidence.runner(runner_pool.run(["undo", str(pipe), "--last", "1", "--json"], env))
        every_command(runner_pool, pipe, env, evidence)
    wrong = {
        **env,
        "AIRFLOW_CONN_SEC_MONGO": env["AIRFLOW_CONN_SEC_MONGO"].replace(SECRETS["mongopw"], SECRETS["wrongpw"]),
    }
    failed = evidence.runner(runner_pool.run(["apply", str(mongo_pipe), "--json", "--traceback"], wrong))
    assert failed.wait() == 1 and "Authentication" in failed.stdout + failed.stderr, failed.describe()
    states = {(e["change_id"], e["state"]) for e in _history(runner_pool, mongo_pipe, env)}
    assert {("seed", "APPLIED"), ("boom", "FAILED"), ("seed", "ROLLED_BACK")} <= states, states
    states = {(e["change_id"], e["state"]) for e in _history(runner_pool, aws_pipe, env)}
    assert {("items", "APPLIED"), ("items", "ROLLED_BACK")} <= states, states
    evidence.add("mongo audit", _dump(mongo.client[mongo.database]["flamingock_audit_log"].find()))
    scan = dynamo.moto.api.client("dynamodb").scan(TableName="sec_audit")["Items"]
    evidence.add("dynamodb audit", json.dumps(scan))
    evidence.files(tmp_path)
    mongo.close()
    assert evidence.leaks() == []
