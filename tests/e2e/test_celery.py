"""Issue 14: the product on Airflow's distributed engine — a CeleryExecutor with two workers.

One deployment for the module (:class:`~tests.e2e.celery_harness.CeleryDeployment`): PostgreSQL as
the metadata database, Redis as the broker, api-server, scheduler, dag-processor, triggerer and two
Celery workers, each with its own AIRFLOW_HOME and FLAMINGOCK_HOME (nothing on a worker's disk is
shared). The audit stores are the ones meant for several machines: PostgreSQL and MongoDB
(SecantusDB); the targets are a PostgreSQL database and a MongoDB database. Each test has its own
pipeline (its own DAG, lease and tables) and checks the target's real state and the audit log.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flamingock_provider import commands
from tests.e2e import celery_pipelines as scenarios
from tests.e2e.celery_harness import CeleryDeployment, Worker
from tests.e2e.harness import AirflowClient, wait_until
from tests.fixtures.mongo_server import MongoServer
from tests.fixtures.postgres_server import PostgresServer
from tests.fixtures.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # the first test also starts the deployment
EMBEDDED = "the embedded audit store lives on one machine; set audit.conn_id in {} to a postgres, mysql, mongo or aws connection"
BROKER_DB = 15  # the session's Redis also serves the lease tests (db 0)


@pytest.fixture(scope="module")
def deployment(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    mongo_server: MongoServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CeleryDeployment]:
    """Start the Celery deployment once for the module; stop every process group at the end."""
    pytest.importorskip("airflow.providers.celery", reason="the celery provider is a test extra")
    suffix = str(int(time.time() * 1000) % 1_000_000)
    postgres_server.create_database(f"celery_meta_{suffix}")
    connections = {
        "AIRFLOW_CONN_FLAMINGOCK_PG": postgres_server.create_database(f"celery_audit_{suffix}"),
        "AIRFLOW_CONN_WAREHOUSE_PG": postgres_server.create_database(f"celery_warehouse_{suffix}"),
        "AIRFLOW_CONN_MONGO_AUDIT": mongo_server.connection_json(f"celery_ops_{suffix}"),
        "AIRFLOW_CONN_MONGO_CATALOG": mongo_server.connection_json(f"celery_shop_{suffix}"),
    }
    meta = f"postgresql+psycopg2://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}/celery_meta_{suffix}"
    broker = f"redis://{redis_server.host}:{redis_server.port}/{BROKER_DB}"
    cluster = CeleryDeployment(
        tmp_path_factory.mktemp("celery"), metadata_uri=meta, broker_url=broker, extra_env=connections
    )
    scenarios.write_scenarios(cluster.dags, hang=cluster.root / "hang")  # parsed once, at start-up
    cluster.start().close()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def airflow(deployment: CeleryDeployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[AirflowClient]:
    """The REST client; the test process reaches the same audit stores and targets as the workers."""
    for key, value in deployment.env.items():
        if key.startswith("AIRFLOW_CONN_"):
            monkeypatch.setenv(key, value)
    client = AirflowClient(deployment.url, "admin")
    yield client
    client.close()


# -- scenarios ---------------------------------------------------------------------------------------


def test_parallel_stages_run_on_both_workers_and_apply_each_unit_once(
    deployment: CeleryDeployment, airflow: AirflowClient, postgres_server: PostgresServer
) -> None:
    dag_id, folder = ready(airflow, deployment, scenarios.PARALLEL)
    run_id, state = airflow.run_pipeline(dag_id, APPLY, timeout=240)
    assert state == "success", airflow.task_states(dag_id, run_id)
    ran_on = hostnames(airflow, dag_id, run_id)
    assert set(ran_on.values()) == {w.name for w in deployment.workers}, ran_on  # both machines ran tasks
    units = [f"{side}-{what}" for side in scenarios.SIDES for what in ("table", "row")]
    assert applied_counts(folder) == Counter(dict.fromkeys(units, 1))
    for side in scenarios.SIDES:
        assert sql_rows(postgres_server, deployment, f"SELECT unit FROM {scenarios.PARALLEL}_{side}") == [
            (f"{side}-row",)
        ]


def test_two_etl_dags_on_one_pipeline_are_serialised_by_the_lease(
    deployment: CeleryDeployment, airflow: AirflowClient, postgres_server: PostgresServer
) -> None:
    folder = deployment.dags / "etl_changes" / scenarios.SHARED
    for dag_id in scenarios.ETL_DAG_IDS:
        airflow.wait_for_dag(dag_id)
        airflow.unpause(dag_id)
    runs = [(dag_id, airflow.trigger(dag_id, {})) for dag_id in scenarios.ETL_DAG_IDS]  # triggered together
    for dag_id, run_id in runs:
        assert airflow.wait_for_run(dag_id, run_id, timeout=240) == "success", airflow.task_states(dag_id, run_id)
    assert applied_counts(folder) == Counter({"create-log": 1, "row-2": 1})
    assert sql_rows(postgres_server, deployment, f"SELECT unit FROM {scenarios.SHARED}_log") == [("row-2",)]
    # Each run held the lease in turn: two acquisitions, and the run that applied took the lower token.
    tokens = {run_id: lock_token(airflow, dag_id, run_id, "changes.lock") for dag_id, run_id in runs}
    writers = {e["run_id"] for e in entries(folder)}
    assert len(writers) == 1 and len(set(tokens.values())) == 2, (writers, tokens)
    assert tokens[writers.pop()] == min(tokens.values())


def test_the_deferrable_lock_waits_in_the_triggerer_until_the_holder_releases(
    deployment: CeleryDeployment, airflow: AirflowClient, postgres_server: PostgresServer
) -> None:
    dag_id, folder = ready(airflow, deployment, scenarios.DEFERRED)
    with commands.workspace(folder) as ws:
        lease = ws.lease()  # another holder: a CLI process's lease
        lease.acquire()
        held = lease.token
        try:
            run_id = airflow.trigger(dag_id, APPLY)
            airflow.wait_for_task_state(dag_id, run_id, "lock", {"deferred"}, timeout=120)
            time.sleep(3)  # several trigger checks: still waiting, in the triggerer, while the lease is held
            states = airflow.task_states(dag_id, run_id)
            assert states["lock"] == "deferred" and states["plan"] is None, states
            assert entries(folder) == []
        finally:
            lease.release()
    assert airflow.wait_for_run(dag_id, run_id, timeout=180) == "success", airflow.task_states(dag_id, run_id)
    assert applied_counts(folder) == Counter({"create-log": 1})
    assert sql_rows(postgres_server, deployment, f"SELECT count(*) FROM {scenarios.DEFERRED}_log") == [(0,)]
    assert held is not None and all(e["lock_token"] > held for e in entries(folder))  # taken after the holder's


def test_the_embedded_store_is_refused_at_once_under_celery(
    deployment: CeleryDeployment, airflow: AirflowClient
) -> None:
    dag_id, folder = ready(airflow, deployment, scenarios.EMBEDDED)
    run_id, state = airflow.run_pipeline(dag_id, APPLY, timeout=180)
    assert state == "failed"
    lock = next(ti for ti in airflow.task_instances(dag_id, run_id) if ti["task_id"] == "lock")
    assert lock["state"] == "failed" and lock["try_number"] == 1  # no retry wasted on it
    logs = [log for w in deployment.workers for log in w.task_logs() if f"dag_id={dag_id}" in str(log)]
    lock_log = "".join(log.read_text(errors="replace") for log in logs if "task_id=lock" in str(log))
    assert EMBEDDED.format(folder / "pipeline.yaml") in lock_log
    homes = [w.flamingock_home for w in deployment.workers]
    assert not any((home / "audit.db").exists() for home in homes)  # no audit log started on any worker


def test_a_worker_killed_inside_a_non_transactional_unit_and_the_next_run_recovers(
    deployment: CeleryDeployment, airflow: AirflowClient, mongo_server: MongoServer
) -> None:
    hang = deployment.root / "hang"
    hang.touch()
    dag_id, folder = ready(airflow, deployment, scenarios.KILLED)
    touches = mongo_target(mongo_server, deployment)["touches"]
    unit = {"_id": scenarios.SLOW_UNIT_ID}
    first = airflow.trigger(dag_id, APPLY)
    wait_until(lambda: touches.find_one(unit), 120, "the unit to touch the target", interval=0.5)
    task = next(t for t in airflow.task_instances(dag_id, first) if t["task_id"].endswith(scenarios.SLOW_UNIT_ID))
    victim = worker_named(deployment, task["hostname"])
    deployment.kill_worker(victim)  # the worker dies with the unit's task inside apply()
    try:
        assert airflow.wait_for_run(dag_id, first, timeout=180) == "failed", airflow.task_states(dag_id, first)
        killed = [e for e in entries(folder) if e["run_id"] == first]
        assert [e["state"] for e in killed][:2] == ["STARTED", "FAILED"], killed  # closed after the worker died
        hang.unlink()
        second, state = airflow.run_pipeline(dag_id, APPLY, timeout=180)
        assert state == "success", airflow.task_states(dag_id, second)
    finally:
        deployment.start_worker(victim, wait=False)  # back for whatever runs next; stop() ends it
    again = [e for e in entries(folder) if e["run_id"] == second]
    assert [e["state"] for e in again] == ["STARTED", "APPLIED"]  # recovery always_retry: applied again
    assert again[0]["lock_token"] > killed[0]["lock_token"]  # after a takeover with a higher fencing token
    assert touches.find_one(unit)["n"] == 2  # non-transactional: the killed run's touch stayed


# -- helpers -----------------------------------------------------------------------------------------

APPLY = {"action": "apply", "undo_to": None}


def ready(client: AirflowClient, deployment: CeleryDeployment, name: str) -> tuple[str, Path]:
    """Wait for a scenario's DAG (parsed at start-up), unpause it; return its id and folder."""
    dag_id = f"flamingock_{name}"
    client.wait_for_dag(dag_id)
    client.unpause(dag_id)
    return dag_id, deployment.changes / name


def entries(folder: Path) -> list[dict[str, Any]]:
    return list(commands.history(folder)["entries"])


def applied_counts(folder: Path) -> Counter[str]:
    return Counter(e["change_id"] for e in entries(folder) if e["state"] == "APPLIED")


def sql_rows(postgres: PostgresServer, deployment: CeleryDeployment, sql: str) -> list[tuple[Any, ...]]:
    conn = postgres.connect(deployment.env["AIRFLOW_CONN_WAREHOUSE_PG"].rpartition("/")[2])
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def hostnames(client: AirflowClient, dag_id: str, run_id: str) -> dict[str, str | None]:
    """Where each task that ran, ran (skipped tasks never reached a worker)."""
    return {ti["task_id"]: ti["hostname"] for ti in client.task_instances(dag_id, run_id) if ti["state"] != "skipped"}


def lock_token(client: AirflowClient, dag_id: str, run_id: str, task_id: str) -> int:
    """The fencing token the lock task handed on (its XCom)."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    return int(client.get(path, deserialize=True)["value"])


def worker_named(deployment: CeleryDeployment, hostname: str | None) -> Worker:
    return next(w for w in deployment.workers if w.name == hostname)


def mongo_target(mongo_server: MongoServer, deployment: CeleryDeployment) -> Any:
    database = json.loads(deployment.env["AIRFLOW_CONN_MONGO_CATALOG"])["schema"]
    return mongo_server.client()[database]
