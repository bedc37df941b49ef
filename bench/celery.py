"""Pipelines on the CeleryExecutor: one worker against two, 8 pipelines x 20 units triggered together.

Starts the test suite's Celery deployment (``tests/e2e/celery_harness.py``: PostgreSQL metadata DB,
Redis broker, api-server, scheduler, dag-processor, triggerer and N ``airflow celery worker``
processes, each with its own homes) once per configuration, with a fresh metadata database. Every
pipeline has one stage of 20 SQL units (one ``INSERT`` each) against a PostgreSQL database, its
audit log and lease in another PostgreSQL database (``flamingock_pg``); the lock sensor polls in
``reschedule`` mode. All pipelines are triggered at once through the REST API.

Figures per configuration, from the task instances' timestamps:

- wall time: the first trigger to the last run's end;
- queue wait: ``queued_when`` → ``start_date`` of every task a worker ran (median and p95): how long a
  task waited for a worker slot;
- per unit: the median duration of a unit task (``start_date`` → ``end_date``), and the wall time per
  unit (wall ÷ all units of all pipelines) — what the whole deployment delivers.

    python bench/celery.py [--pipelines 8] [--units 20] [--concurrency 4] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from common import print_title

from tests.conftest import sql_unit
from tests.e2e.celery_harness import CeleryDeployment
from tests.e2e.harness import FINISHED, AirflowClient, wait_until
from tests.fixtures.postgres_server import PostgresServer, start_postgres
from tests.fixtures.redis_server import local_redis

PIPELINE_YAML = (
    "audit: {conn_id: flamingock_pg}\ntargets:\n  warehouse: {conn_id: warehouse_pg}\ndefault_target: warehouse\n"
    "lock: {lease_seconds: 120, wait_timeout_seconds: 1800, poke_interval_seconds: 2}\n"
)


def epoch(iso: str | None) -> float:
    if not iso:
        raise ValueError("the task has no timestamp")
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def pipeline(name: str, units: int) -> dict[str, str]:
    table = f"{name}_rows"
    files = {"pipeline.yaml": PIPELINE_YAML}
    files["0001_create.yaml"] = sql_unit("create", f"CREATE TABLE {table} (n INT)", f"DROP TABLE {table}")
    for n in range(2, units + 1):
        files[f"{n:04d}_row.yaml"] = sql_unit(f"row-{n}", f"INSERT INTO {table} VALUES ({n})")
    return files


def write_pipelines(dags: Path, names: list[str], units: int) -> None:
    for name in names:
        for rel, text in pipeline(name, units).items():
            path = dags / "changes" / name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def run_configuration(
    postgres: PostgresServer, broker: str, root: Path, workers: int, args: argparse.Namespace
) -> dict[str, Any]:
    tag = f"w{workers}_{int(time.time()) % 100_000}"
    postgres.create_database(f"meta_{tag}")
    env = {
        "AIRFLOW_CONN_FLAMINGOCK_PG": postgres.create_database(f"audit_{tag}"),
        "AIRFLOW_CONN_WAREHOUSE_PG": postgres.create_database(f"warehouse_{tag}"),
        "AIRFLOW__CORE__PARALLELISM": "64",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "16",
    }
    meta = f"postgresql+psycopg2://{postgres.user}@{postgres.host}:{postgres.port}/meta_{tag}"
    cluster = CeleryDeployment(
        root / tag, metadata_uri=meta, broker_url=broker, workers=workers, concurrency=args.concurrency, extra_env=env
    )
    names = [f"bench_{tag}_p{n}" for n in range(1, args.pipelines + 1)]
    write_pipelines(cluster.dags, names, args.units)
    client = cluster.start()
    try:
        dag_ids = [f"flamingock_{name}" for name in names]
        for dag_id in dag_ids:
            client.wait_for_dag(dag_id, timeout=300)
            client.unpause(dag_id)
        started = time.time()
        runs = [(dag_id, client.trigger(dag_id, {"action": "apply", "undo_to": None})) for dag_id in dag_ids]
        for dag_id, run_id in runs:
            state = wait_until(lambda d=dag_id, r=run_id: finished(client, d, r), 3600, f"{dag_id} to finish", 2)
            if state != "success":
                raise RuntimeError(f"{dag_id} ended {state}: {client.task_states(dag_id, run_id)}")
        return figures(client, runs, started, workers, args)
    finally:
        client.close()
        cluster.stop()


def finished(client: AirflowClient, dag_id: str, run_id: str) -> str | None:
    state = client.run(dag_id, run_id)["state"]
    return str(state) if state in FINISHED else None


def figures(
    client: AirflowClient, runs: list[tuple[str, str]], started: float, workers: int, args: argparse.Namespace
) -> dict[str, Any]:
    tis = [ti for dag_id, run_id in runs for ti in client.task_instances(dag_id, run_id)]
    ran = [ti for ti in tis if ti.get("hostname") and ti.get("start_date") and ti.get("queued_when")]
    waits = sorted(epoch(ti["start_date"]) - epoch(ti["queued_when"]) for ti in ran)
    units = [epoch(ti["end_date"]) - epoch(ti["start_date"]) for ti in ran if ".apply_" in ti["task_id"]]
    ended = max(epoch(run["end_date"]) for run in (client.run(d, r) for d, r in runs))
    wall = ended - started
    return {
        "workers": workers,
        "slots": workers * args.concurrency,
        "tasks": len(ran),
        "wall": wall,
        "wait_median": statistics.median(waits),
        "wait_p95": waits[int(0.95 * (len(waits) - 1))],
        "unit_median": statistics.median(units),
        "wall_per_unit": wall / (args.pipelines * args.units),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=8)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4, help="task slots per worker")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    postgres = start_postgres()
    if postgres is None:
        raise SystemExit("PostgreSQL is not installed (scripts/system_deps.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="flamingock-bench-celery-") as tmp:
        redis = local_redis(Path(tmp))
        try:
            broker = f"redis://{redis.host}:{redis.port}/0"
            results = [run_configuration(postgres, broker, Path(tmp), n, args) for n in args.workers]
        finally:
            redis.stop()
            postgres.stop("immediate")
    print_title(
        f"CeleryExecutor: {args.pipelines} pipelines x {args.units} units triggered together, "
        f"{args.concurrency} slots per worker"
    )
    print("| workers | slots | tasks run | wall time | queue wait median / p95 | unit task median | wall per unit |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['workers']} | {r['slots']} | {r['tasks']} | {r['wall']:.0f} s | {r['wait_median']:.1f} s / "
            f"{r['wait_p95']:.1f} s | {r['unit_median']:.2f} s | {r['wall_per_unit']:.2f} s |"
        )


if __name__ == "__main__":
    main()
