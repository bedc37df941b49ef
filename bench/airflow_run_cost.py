"""What a real Airflow run costs: task_per_unit vs task_per_stage, and lock wait → start latency.

Starts ``airflow standalone`` with the e2e harness (``tests/e2e/harness.py``: SQLite metadata DB,
LocalExecutor, its own home and ports) and drives it through the REST API, as a user's trigger does.

1. Run cost: one pipeline of N SQLite units (5 stages) in each run mode; the wall time of the
   first ``apply`` (everything applied) and of a second one (nothing to do: every unit skipped).
2. Lock latency: a CLI process holds the lease while a run waits in its lock sensor (``poke``,
   ``reschedule``, ``deferrable``; same poke interval); the bench releases the lease and measures
   release → lock task done and release → the plan task started.

    python bench/airflow_run_cost.py [--units 50] [--poke 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import print_title

from flamingock_provider.stores.sqlite import SqliteStore
from tests.conftest import sql_unit
from tests.e2e.harness import AirflowClient, AirflowServer
from tests.e2e.pipelines import pipeline_yaml

STAGES = 5
HOLDER = "cli/bench/1/holder"


def epoch(iso: str | None) -> float:
    if not iso:
        raise ValueError("the task has no timestamp yet")
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def units_pipeline(name: str, units: int, run_mode: str) -> dict[str, str]:
    files = {"pipeline.yaml": pipeline_yaml(extra=f"run_mode: {run_mode}\n")}
    per_stage = -(-units // STAGES)
    for n in range(1, units + 1):
        stage = (n - 1) // per_stage + 1
        table = f"{name}_t{n}"
        files[f"{stage:02d}_stage{stage}/{n:04d}_unit_{n}.yaml"] = sql_unit(
            f"unit-{n}", f"CREATE TABLE {table} (id INTEGER)", f"DROP TABLE {table}"
        )
    return files


def deploy(server: AirflowServer, client: AirflowClient, name: str, files: dict[str, str]) -> str:
    server.add_pipeline(name, files)
    dag_id = f"flamingock_{name}"
    client.wait_for_dag(dag_id, timeout=180)
    client.unpause(dag_id)
    return dag_id


def timed_run(client: AirflowClient, dag_id: str) -> tuple[float, int, str]:
    begin = time.monotonic()
    run_id, state = client.run_pipeline(dag_id, {"action": "apply", "undo_to": None}, timeout=1800)
    wall = time.monotonic() - begin
    ran = sum(1 for ti in client.task_instances(dag_id, run_id) if ti["start_date"])
    return wall, ran, state


def run_cost(server: AirflowServer, client: AirflowClient, units: int) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for mode in ("task_per_unit", "task_per_stage"):
        dag_id = deploy(server, client, f"bench_{mode}", units_pipeline(f"bench_{mode}", units, mode))
        first, ran, state = timed_run(client, dag_id)
        again, ran_again, state_again = timed_run(client, dag_id)
        assert state == state_again == "success", (state, state_again)
        rows.append((mode, str(ran), f"{first:.1f}", f"{first / units * 1000:.0f}", f"{again:.1f}", str(ran_again)))
    return rows


def lock_latency(server: AirflowServer, client: AirflowClient, mode: str, poke: float, repeat: int) -> tuple[str, ...]:
    name = f"bench_lock_{mode}"
    dag_id = deploy(
        server,
        client,
        name,
        units_pipeline(name, 1, "task_per_unit") | {"pipeline.yaml": pipeline_yaml(mode=mode, poke=poke)},
    )
    waiting = {"poke": {"running"}, "reschedule": {"up_for_reschedule"}, "deferrable": {"deferred"}}[mode]
    store = SqliteStore(server.flamingock_home / "audit.db")
    to_lock, to_plan = [], []
    try:
        for _ in range(repeat):
            held = store.acquire(name, HOLDER, 600)
            assert held is not None
            run_id = client.trigger(dag_id, {"action": "apply", "undo_to": None})
            client.wait_for_task_state(dag_id, run_id, "lock", waiting, timeout=120)
            time.sleep(poke * 1.5)  # steady waiting, not the first try
            released = time.time()
            store.release(name, HOLDER, held.token)
            assert client.wait_for_run(dag_id, run_id, timeout=300) == "success"
            tis = {ti["task_id"]: ti for ti in client.task_instances(dag_id, run_id)}
            to_lock.append(epoch(tis["lock"]["end_date"]) - released)
            to_plan.append(epoch(tis["plan"]["start_date"]) - released)
    finally:
        store.close()
    slots = {"poke": "yes", "reschedule": "between pokes: no", "deferrable": "no (triggerer)"}[mode]
    return (
        mode,
        f"{poke:g}",
        f"{statistics.median(to_lock):.1f}",
        f"{max(to_lock):.1f}",
        f"{statistics.median(to_plan):.1f}",
        slots,
    )


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--poke", type=float, default=2.0, help="lock poke interval of the latency runs (s)")
    parser.add_argument("--repeat", type=int, default=3, help="latency samples per sensor mode")
    args = parser.parse_args()
    print_title("Airflow run cost (airflow standalone, LocalExecutor, SQLite metadata DB)")

    with tempfile.TemporaryDirectory(prefix="flamingock-bench-airflow-") as tmp:
        server = AirflowServer(Path(tmp))
        started = time.monotonic()
        client = server.start()
        print(f"airflow standalone healthy after {time.monotonic() - started:.0f}s at {server.url}\n")
        try:
            cost = run_cost(server, client, args.units)
            print(
                f"{args.units} SQLite units in {STAGES} stages, one DAG run each (wall time, trigger → run finished):"
            )
            header = ("run mode", "tasks run", "apply s", "ms/unit", "no-op rerun s", "tasks run (rerun)")
            print(table(header, cost))
            latency = [
                lock_latency(server, client, mode, args.poke, args.repeat)
                for mode in ("poke", "reschedule", "deferrable")
            ]
            print(
                f"\nlock wait → start: a CLI holds the lease, the run waits, the lease is released (median of {args.repeat}):"
            )
            header = (
                "sensor mode",
                "poke s",
                "release→lock done s",
                "max s",
                "release→plan start s",
                "worker slot while waiting",
            )
            print(table(header, latency))
        finally:
            client.close()
            server.stop()


if __name__ == "__main__":
    main()
