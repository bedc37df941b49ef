"""What a real Airflow run costs, against Airflow's own floor, and lock wait → start latency.

Starts ``airflow standalone`` with the e2e harness (``tests/e2e/harness.py``: SQLite metadata DB,
LocalExecutor, its own home and ports; here with Airflow's default ``[workers]
min_heartbeat_interval``) and drives it through the REST API, as a user's trigger does.

1. Run cost: one pipeline of N SQLite units (5 stages) in each run mode; the wall time of the
   first ``apply`` (everything applied) and of a second one (nothing to do). Beside them, in the
   same Airflow, the floor: the same shape written by hand (a sensor as setup, a plan task, N
   ``@task`` no-ops in 5 TaskGroups — or one per group for ``task_per_stage`` —, a watcher and a
   teardown), and the four bookkeeping tasks alone (what a run with nothing to do cannot go
   under). "Tasks run" counts tasks a worker ran (a hostname or pid): a task the scheduler or the
   plan task skipped gets ``start_date == end_date`` but no worker.
   Then ``execute()`` of one no-op SQLite unit (``SELECT 1``, run_always), from its task log.
2. Lock latency: a CLI process holds the lease while a run waits in its lock sensor (``poke``,
   ``reschedule``, ``deferrable``; same poke interval); the bench releases the lease and measures
   release → lock task done and release → the plan task started.

    python bench/airflow_run_cost.py [--units 50 200] [--poke 2] [--repeat 3] [--no-latency]
                                     [--execute-only] [--profile DIR]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from common import print_title

from flamingock_provider.operators._profile import PROFILE_DIR
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


FLOOR_DAGS = '''"""The floor: Flamingock's DAG shapes written by hand (bench/airflow_run_cost.py writes this file)."""

from datetime import datetime

from airflow.sdk import DAG, PokeReturnValue, TaskGroup, task

SHAPES = {SHAPES!r}


def build(dag_id: str, groups: int, per_group: int) -> DAG:
    with DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_runs=1) as dag:

        @task.sensor(poke_interval=1, mode="reschedule")
        def lock() -> PokeReturnValue:
            return PokeReturnValue(is_done=True, xcom_value=1)

        @task
        def plan() -> dict[str, str]:
            return {"action": "apply"}

        @task(trigger_rule="none_failed")
        def unit() -> None:
            return None

        @task(trigger_rule="none_failed")
        def complete() -> None:
            return None

        @task
        def release() -> None:
            return None

        sensor, planned, done = lock(), plan(), complete()
        sensor >> planned
        previous = [planned]
        for g in range(groups):
            with TaskGroup(f"stage{g + 1}"):
                tasks = [unit.override(task_id=f"apply_{n}")() for n in range(per_group)]
            for before, after in zip(tasks, tasks[1:]):
                before >> after
            previous[-1] >> tasks[0]
            previous = [tasks[-1]]
        previous[-1] >> done
        teardown = release().as_teardown(setups=sensor)
        done >> teardown
    return dag


for _dag_id, (_groups, _per_group) in SHAPES.items():
    globals()[_dag_id] = build(_dag_id, _groups, _per_group)
'''


def floor_shapes(units: list[int]) -> dict[str, tuple[int, int]]:
    """dag_id -> (groups, tasks per group): per N the unit and the stage shapes, and bookkeeping only."""
    shapes: dict[str, tuple[int, int]] = {"floor_bookkeeping": (0, 0)}
    for n in units:
        shapes[f"floor_unit_{n}"] = (STAGES, -(-n // STAGES))
        shapes[f"floor_stage_{n}"] = (STAGES, 1)
    return shapes


def write_floor(server: AirflowServer, units: list[int]) -> None:
    server.dags.mkdir(parents=True, exist_ok=True)
    (server.dags / "bench_floor.py").write_text(FLOOR_DAGS.replace("{SHAPES!r}", repr(floor_shapes(units))))


def timed_run(client: AirflowClient, dag_id: str, conf: dict[str, object] | None = None) -> tuple[float, int, str, str]:
    """Trigger and wait: (wall s, tasks a worker ran, final state, run id)."""
    begin = time.monotonic()
    run_id, state = client.run_pipeline(dag_id, conf or {"action": "apply", "undo_to": None}, timeout=1800)
    wall = time.monotonic() - begin
    ran = sum(1 for ti in all_task_instances(client, dag_id, run_id) if ti.get("hostname") or ti.get("pid"))
    return wall, ran, state, run_id


def all_task_instances(client: AirflowClient, dag_id: str, run_id: str) -> list[dict[str, object]]:
    """Every task instance of the run: the REST API serves at most 100 per page."""
    found: list[dict[str, object]] = []
    while True:
        page = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100, offset=len(found))
        found += page["task_instances"]
        if not page["task_instances"] or len(found) >= page["total_entries"]:
            return found


def ready(client: AirflowClient, dag_id: str) -> str:
    client.wait_for_dag(dag_id, timeout=300)
    client.unpause(dag_id)
    return dag_id


def ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}x" if floor else "-"


def median_run(
    client: AirflowClient, dag_id: str, repeat: int, conf: dict[str, object] | None = None
) -> tuple[float, int]:
    """Median wall time of ``repeat`` successful runs, and the tasks a worker ran in the last."""
    walls, ran = [], 0
    for _ in range(repeat):
        wall, ran, state, _ = timed_run(client, dag_id, conf)
        assert state == "success", (dag_id, state)
        walls.append(wall)
    return statistics.median(walls), ran


def run_cost(server: AirflowServer, client: AirflowClient, units: int, repeat: int) -> list[tuple[str, ...]]:
    """Rows: (what, tasks run, wall s, floor, floor s, ratio). Cheap runs are medians of ``repeat``."""
    book_s, book_ran = median_run(client, ready(client, "floor_bookkeeping"), repeat, {})
    rows: list[tuple[str, ...]] = []
    for mode, floor_id in (("task_per_unit", f"floor_unit_{units}"), ("task_per_stage", f"floor_stage_{units}")):
        cheap = repeat if mode == "task_per_stage" else 1
        floor_s, floor_ran = median_run(client, ready(client, floor_id), cheap, {})
        name = f"bench_{mode}_{units}"
        dag_id = deploy(server, client, name, units_pipeline(name, units, mode))
        first, ran, state, _ = timed_run(client, dag_id)  # an apply happens once per pipeline
        assert state == "success", state
        again, ran_again = median_run(client, dag_id, repeat)
        rows += [
            (f"{floor_id} (by hand)", str(floor_ran), f"{floor_s:.1f}", "", "", ""),
            (f"{mode} apply", str(ran), f"{first:.1f}", floor_id, f"{floor_s:.1f}", ratio(first, floor_s)),
            (
                f"{mode} no-op rerun",
                str(ran_again),
                f"{again:.1f}",
                "floor_bookkeeping",
                f"{book_s:.1f}",
                ratio(again, book_s),
            ),
        ]
    rows.insert(0, ("floor_bookkeeping (by hand)", str(book_ran), f"{book_s:.1f}", "", "", ""))
    return rows


EXECUTE_MS = re.compile(r"execute took ([0-9.]+) ms")


def execute_cost(server: AirflowServer, client: AirflowClient, repeat: int) -> list[float]:
    """execute() start → end of one no-op SQLite unit (run_always ``SELECT 1``), read from its task logs."""
    files = {
        "pipeline.yaml": pipeline_yaml(extra="run_mode: task_per_unit\n"),
        "01_main/0001_noop.yaml": sql_unit("noop", "SELECT 1", run_always="true"),
    }
    dag_id = deploy(server, client, "bench_execute", files)
    timed_run(client, dag_id)  # the first task compiles this package's bytecode (cached from then on)
    found: list[float] = []
    for _ in range(repeat):
        _, _, state, run_id = timed_run(client, dag_id)
        assert state == "success", state
        log = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/main.apply_noop/logs/1")
        found += [float(m) for m in EXECUTE_MS.findall(str(log))]
    return found


def failed_logs(server: AirflowServer, client: AirflowClient, dag_id: str, run_id: str, chars: int = 3000) -> str:
    """The task states of a run and the log tail of each task that did not succeed (why a bench run failed)."""
    states = client.task_states(dag_id, run_id)
    shown = [f"task states: {states}"]
    for task_id, state in states.items():
        if state not in ("success", "skipped"):
            folder = (
                server.root / "airflow_home" / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
            )
            for log in sorted(folder.glob("attempt=*.log")):
                shown.append(f"--- {task_id} ({state}) {log.name}:\n{log.read_text(errors='replace')[-chars:]}")
    return "\n".join(shown)


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
            state = client.wait_for_run(dag_id, run_id, timeout=300)
            if state != "success":
                raise RuntimeError(f"the {mode} lock run ended {state}:\n{failed_logs(server, client, dag_id, run_id)}")
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
    parser.add_argument("--units", type=int, nargs="*", default=[50, 200], help="none: skip the run-cost runs")
    parser.add_argument("--poke", type=float, default=2.0, help="lock poke interval of the latency runs (s)")
    parser.add_argument("--repeat", type=int, default=3, help="latency / execute samples")
    parser.add_argument("--no-latency", action="store_true", help="skip the lock latency runs")
    parser.add_argument("--execute-only", action="store_true", help="only the execute() samples")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="workers write a cProfile of each apply task's execute() to DIR"
    )
    args = parser.parse_args()
    print_title("Airflow run cost (airflow standalone, LocalExecutor, SQLite metadata DB)")

    with tempfile.TemporaryDirectory(prefix="flamingock-bench-airflow-") as tmp:
        # Airflow's default supervisor wake-up (the e2e suite lowers it to 1 s).
        extra = {
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "5",
            # Cached bytecode, as in any deployment (pip compiles an installed package's modules): with
            # PYTHONDONTWRITEBYTECODE every task's worker compiles this package from source again.
            "PYTHONDONTWRITEBYTECODE": "",
            "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"),
        }
        if args.profile is not None:
            extra[PROFILE_DIR] = str(args.profile.resolve())
        server = AirflowServer(Path(tmp), extra_env=extra)
        write_floor(server, args.units)
        started = time.monotonic()
        client = server.start()
        client.http.timeout = httpx.Timeout(180)  # a machine shared with other jobs answers slowly at times
        print(f"airflow standalone healthy after {time.monotonic() - started:.0f}s at {server.url}\n")
        try:
            warm = ready(client, "floor_bookkeeping")
            timed_run(client, warm, {})  # the first run after start-up pays for the workers' first imports
            for units in [] if args.execute_only else args.units:
                cost = run_cost(server, client, units, args.repeat)
                print(f"{units} SQLite units in {STAGES} stages, one DAG run each (wall time, trigger → run finished):")
                header = ("run", "tasks run", "wall s", "floor", "floor s", "ratio")
                print(table(header, cost), flush=True)
                print()
            samples = execute_cost(server, client, args.repeat)
            print(
                f"execute() of a no-op SQLite unit, from its task log: median {statistics.median(samples):.1f} ms, "
                f"max {max(samples):.1f} ms over {len(samples)} runs\n",
                flush=True,
            )
            if args.profile is not None:
                print(f"profiles of each apply task's execute() in {args.profile}: python -m pstats FILE\n")
            if args.no_latency or args.execute_only:
                return
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
