"""DAG build time and peak memory: flamingock_provider against the same DAG by hand and dag-factory.

    .venv/bin/python bench/parse.py [--sizes 10,100,1000,10000] [--repeat 3]

The floor is the same shape written by hand, as a new user would: a Python DAG file with a loop
of EmptyOperator tasks in TaskGroups chained with ``>>``. For each size it writes a pipeline of N
units in 20 stages (SQL units with a rollback), that DAG file and a dag-factory YAML of the shape: the same task count (lock, plan, one chained task per unit,
a rollback per stage, undo and one undo task per stage in a group, complete with the ``flamingock://`` asset outlet, release), the same
TaskGroups, chained the same way. Every measurement runs in a fresh interpreter, as Airflow's DAG
processor and workers do, after importing Airflow; what is timed is what parsing the DAG file adds:
importing the library and building (best of --repeat). Peak memory is traced (tracemalloc) in a
separate run. Bytecode is cached (``PYTHONPYCACHEPREFIX``), as in any deployment.

- flamingock, no cache: the folder is parsed (``FLAMINGOCK_PARSE_CACHE=off``);
- flamingock, cached: the folder is unchanged since the last parse (the local file cache answers);
- worker re-parse: a task's worker imports the loader file (``BundleDagBag``) with Airflow's
  parsing context naming one DAG of 1,000 units and one of its tasks, beside 3 other pipelines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

STAGES = 20
EMPTY = "airflow.providers.standard.operators.empty.EmptyOperator"
LOADER = (
    '"""Airflow DAG loader (bench)."""\nfrom pathlib import Path\n\nfrom flamingock_provider import build_dags\n\n'
    'globals().update(build_dags(Path(__file__).parent / "changes"))\n'
)
DAGFACTORY_LOADER = (
    '"""Airflow DAG file for dag-factory (bench)."""\nfrom pathlib import Path\n\nfrom dagfactory import load_yaml_dags\n\n'
    'HERE = str(Path(__file__).parent)\nload_yaml_dags(globals_dict=globals(), config_filepath=HERE + "/bench.yml", defaults_config_path=HERE)\n'
)


# -- fixtures ---------------------------------------------------------------------------------


def unit_yaml(k: int) -> str:
    return (
        f"id: unit-{k}\nauthor: bench\ndescription: table t{k}\ntemplate: sql\n"
        f"apply:\n  statements: CREATE TABLE t{k} (x INT)\nrollback:\n  statements: DROP TABLE t{k}\n"
    )


def write_pipeline(folder: Path, units: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "pipeline.yaml").write_text("targets:\n  warehouse: {conn_id: warehouse_db}\n")
    per_stage = max(1, units // STAGES)
    for k in range(1, units + 1):
        number = min(STAGES, (k - 1) // per_stage + 1)
        stage = folder / f"{number:02d}_stage_{number:02d}"
        stage.mkdir(exist_ok=True)
        (stage / f"{k:05d}_unit.yaml").write_text(unit_yaml(k))
    return folder


def dagfactory_config(units: int, dag_id: str) -> dict[str, Any]:
    """The same shape as flamingock's DAG, as dag-factory YAML."""
    per_stage = max(1, units // STAGES)
    tasks: dict[str, Any] = {"lock": {"operator": EMPTY}, "plan": {"operator": EMPTY, "dependencies": ["lock"]}}
    groups: dict[str, Any] = {}
    previous, lasts = "plan", []
    for k in range(1, units + 1):
        stage = f"stage_{min(STAGES, (k - 1) // per_stage + 1):02d}"
        if stage not in groups:
            groups[stage] = {"tooltip": stage}
        tasks[f"apply_unit-{k}"] = {"operator": EMPTY, "task_group_name": stage, "dependencies": [previous]}
        last_of_stage = k == units or min(STAGES, k // per_stage + 1) != min(STAGES, (k - 1) // per_stage + 1)
        if last_of_stage:
            tasks[f"{stage}_rollback"] = {
                "operator": EMPTY,
                "task_group_name": stage,
                "dependencies": [f"apply_unit-{k}"],
            }
            lasts += [f"apply_unit-{k}", f"{stage}_rollback"]
        previous = f"apply_unit-{k}"
    tasks["undo"] = {"operator": EMPTY, "dependencies": ["plan"]}
    before, stages = "undo", list(groups)
    groups["undo_stages"] = {"tooltip": "undo_stages"}
    for stage in reversed(stages):  # each stage's undo, newest stage first
        tasks[f"undo_{stage}"] = {
            "operator": EMPTY,
            "task_group_name": "undo_stages",
            "dependencies": sorted({"undo", before}),
        }
        lasts.append(before := f"undo_{stage}")
    tasks["complete"] = {"operator": EMPTY, "dependencies": [*lasts, "undo"], "outlets": [f"flamingock://{dag_id}"]}
    tasks["release"] = {"operator": EMPTY, "dependencies": [*lasts, "undo", "complete"]}
    dag = {"schedule": None, "catchup": False, "default_args": {"start_date": "2025-01-01"}}
    return {dag_id: {**dag, "task_groups": groups, "tasks": tasks}}


HAND = '''"""The floor: a pipeline's DAG shape by hand (bench/parse.py)."""
from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, TaskGroup

UNITS, STAGES = {units}, {stages}
per_stage = max(1, UNITS // STAGES)
with DAG("hand", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_runs=1) as dag:
    lock = EmptyOperator(task_id="lock")
    plan = EmptyOperator(task_id="plan")
    lock >> plan
    previous, work, stages = plan, [], []
    for number in range(1, STAGES + 1):
        ks = [k for k in range(1, UNITS + 1) if min(STAGES, (k - 1) // per_stage + 1) == number]
        if not ks:
            continue
        stages.append(number)
        with TaskGroup(f"stage_{{number:02d}}"):
            units = [EmptyOperator(task_id=f"apply_unit-{{k}}", trigger_rule="none_failed") for k in ks]
            for before, after in zip(units, units[1:]):
                before >> after
            rollback = EmptyOperator(task_id="rollback", trigger_rule="one_failed")
            units[-1] >> rollback
        previous >> units[0]
        previous = units[-1]
        work += [units[-1], rollback]
    undo = EmptyOperator(task_id="undo")
    plan >> undo
    before = undo
    with TaskGroup("undo_stages"):  # each stage's undo, newest stage first
        for number in reversed(stages):
            stage_undo = EmptyOperator(task_id=f"stage_{{number:02d}}", trigger_rule="none_failed")
            undo >> stage_undo
            before >> stage_undo
            before = stage_undo
            work.append(stage_undo)
    complete = EmptyOperator(task_id="complete", trigger_rule="none_failed", outlets=[Asset("flamingock://bench")])
    [*work, undo] >> complete
    release = EmptyOperator(task_id="release")
    [*work, undo, complete] >> release
    release.as_teardown(setups=lock)
'''


def write_hand(folder: Path, units: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hand_dag.py"
    path.write_text(HAND.format(units=units, stages=STAGES))
    return path


def write_dagfactory(folder: Path, units: int) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.yml"
    path.write_text(yaml.safe_dump(dagfactory_config(units, "bench"), sort_keys=False))
    return path


# -- one measurement, in a fresh interpreter ---------------------------------------------------


def child(kind: str, target: str, trace: bool) -> dict[str, Any]:
    """Import the library and build once in this (fresh) process: what parsing a DAG file costs."""
    import airflow.sdk  # noqa: F401  (the baseline every DAG file starts from)

    if kind == "worker":
        return _worker_parse(target, trace)

    def build() -> Any:
        if kind.startswith("flamingock"):
            from flamingock_provider import build_dag

            return build_dag(target)
        if kind == "hand":
            import runpy

            return runpy.run_path(target)["dag"]
        from dagfactory import load_yaml_dags

        found: dict[str, Any] = {}
        load_yaml_dags(globals_dict=found, config_filepath=target, defaults_config_path=str(Path(target).parent))
        return found["bench"]

    return _measure(build, trace)


def _worker_parse(loader: str, trace: bool) -> dict[str, Any]:
    import airflow.sdk.execution_time.task_runner  # noqa: F401  (loaded before any parse in a worker)
    from airflow.dag_processing.dagbag import BundleDagBag

    def parse() -> Any:
        bag = BundleDagBag(dag_folder=loader, bundle_path=Path(loader).parent, bundle_name="bench", safe_mode=False)
        assert not bag.import_errors, bag.import_errors
        return next(iter(bag.dags.values()))

    return _measure(parse, trace)


def _measure(build: Any, trace: bool) -> dict[str, Any]:
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    dag = build()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if trace else None
    return {"seconds": seconds, "peak": peak, "tasks": len(dag.tasks)}


def run_child(kind: str, target: Path, env: dict[str, str], trace: bool = False) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, str(target)] + (["--trace"] if trace else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {target} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def best(kind: str, target: Path, env: dict[str, str], repeat: int) -> dict[str, Any]:
    runs = [run_child(kind, target, env) for _ in range(repeat)]
    traced = run_child(kind, target, env, trace=True)
    return {
        "seconds": min(r["seconds"] for r in runs),
        "median": statistics.median(r["seconds"] for r in runs),
        "peak": traced["peak"],
        "tasks": runs[0]["tasks"],
    }


# -- the report --------------------------------------------------------------------------------


def bench_size(root: Path, units: int, env: dict[str, str], repeat: int) -> dict[str, Any]:
    folder = write_pipeline(root / f"n{units}" / "changes" / "bench", units)
    config = write_dagfactory(root / f"n{units}" / "dagfactory", units)
    hand = write_hand(root / f"n{units}" / "hand", units)
    off = {**env, "FLAMINGOCK_PARSE_CACHE": "off"}
    cached = {**env, "FLAMINGOCK_PARSE_CACHE": str(root / "parse-cache")}
    run_child("flamingock", folder, cached)  # fills the file cache (and the bytecode cache)
    run_child("dagfactory", config, env)  # warms the bytecode cache
    run_child("hand", hand, env)
    return {
        "units": units,
        "hand": best("hand", hand, env, repeat),
        "cold": best("flamingock", folder, off, repeat),
        "cached": best("flamingock-cached", folder, cached, repeat),
        "dagfactory": best("dagfactory", config, env, repeat),
    }


def bench_worker(root: Path, env: dict[str, str], repeat: int) -> dict[str, Any]:
    bundle = root / "worker-bundle"
    write_pipeline(bundle / "changes" / "big", 1000)
    for name in ("small_a", "small_b", "small_c"):
        write_pipeline(bundle / "changes" / name, 20)
    (bundle / "flamingock_dags.py").write_text(LOADER)
    write_dagfactory(bundle / "df", 1000)
    (bundle / "df" / "dagfactory_dags.py").write_text(DAGFACTORY_LOADER)
    cached = {**env, "FLAMINGOCK_PARSE_CACHE": str(root / "parse-cache")}
    worker = {
        **cached,
        "_AIRFLOW_PARSING_CONTEXT_DAG_ID": "flamingock_big",
        "_AIRFLOW_PARSING_CONTEXT_TASK_ID": "stage_05.apply_unit-500",
    }
    run_child("worker", bundle / "flamingock_dags.py", cached)  # fills the file caches
    run_child("worker", bundle / "df" / "dagfactory_dags.py", env)
    df_env = {
        **env,
        "_AIRFLOW_PARSING_CONTEXT_DAG_ID": "bench",
        "_AIRFLOW_PARSING_CONTEXT_TASK_ID": "stage_05.apply_unit-500",
    }
    return {
        "flamingock": best("worker", bundle / "flamingock_dags.py", worker, repeat),
        "dagfactory": best("worker", bundle / "df" / "dagfactory_dags.py", df_env, repeat),
    }


def mib(value: int | None) -> str:
    return f"{value / 2**20:7.1f}" if value is not None else "      -"


def report(sizes: list[dict[str, Any]], worker: dict[str, Any]) -> str:
    head = (
        f"{'units':>6} {'tasks':>6} | {'flamingock s':>12} {'cached s':>9} {'dag-factory s':>13} | "
        f"{'df/flam':>7} {'df/cached':>9} | {'flam MiB':>8} {'df MiB':>7}"
    )
    lines = ["DAG build in a fresh process (best of runs; peak traced separately)", head, "-" * len(head)]
    for row in sizes:
        cold, cached, df = row["cold"], row["cached"], row["dagfactory"]
        lines.append(
            f"{row['units']:>6} {cold['tasks']:>6} | {cold['seconds']:>12.3f} {cached['seconds']:>9.3f} "
            f"{df['seconds']:>13.3f} | {df['seconds'] / cold['seconds']:>6.2f}x {df['seconds'] / cached['seconds']:>8.2f}x | "
            f"{mib(cold['peak']):>8} {mib(df['peak']):>7}"
        )
    head = (
        f"{'units':>6} {'tasks':>6} | {'by hand s':>9} {'flamingock s':>12} {'cached s':>9} | "
        f"{'first/hand':>10} {'cached/hand':>11} | {'hand MiB':>8} {'flam MiB':>8} {'flam/hand':>9}"
    )
    lines += ["", "Against the floor: the same DAG by hand (EmptyOperators in TaskGroups, chained with >>)", head]
    lines.append("-" * len(head))
    for row in sizes:
        hand, cold, cached = row["hand"], row["cold"], row["cached"]
        lines.append(
            f"{row['units']:>6} {hand['tasks']:>6} | {hand['seconds']:>9.3f} {cold['seconds']:>12.3f} "
            f"{cached['seconds']:>9.3f} | {cold['seconds'] / hand['seconds']:>9.2f}x "
            f"{cached['seconds'] / hand['seconds']:>10.2f}x | {mib(hand['peak']):>8} {mib(cold['peak']):>8} "
            f"{cold['peak'] / hand['peak']:>8.2f}x"
        )
    lines.append(
        "Goal (issue 15): at 1,000 and 10,000 units, first parse and cached ≤ 1.15x the time, ≤ 1.3x the memory."
    )
    flam, df = worker["flamingock"], worker["dagfactory"]
    lines += [
        "",
        "Worker re-parse of one DAG of 1,000 units (BundleDagBag of the DAG file, parsing context set)",
        f"  flamingock_dags.py (4 pipelines, builds 1): {flam['seconds']:.3f} s  peak {mib(flam['peak']).strip()} MiB",
        f"  dag-factory file (1 DAG):                   {df['seconds']:.3f} s  peak {mib(df['peak']).strip()} MiB",
        f"  ratio dag-factory / flamingock:             {df['seconds'] / flam['seconds']:.2f}x",
        "",
        "Goals: 1,000 units < 0.5 s and never slower than dag-factory; worker re-parse of 1,000 units < 0.5 s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "TARGET"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.trace)))
        return
    root = Path(tempfile.mkdtemp(prefix="flamingock-bench-"))
    home = root / "airflow_home"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(root),
        "FLAMINGOCK_HOME": str(root / "flamingock_home"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        # Cached bytecode, as in any deployment (kept out of the venv); the first run of each kind warms it.
        "PYTHONPYCACHEPREFIX": str(root / "pycache"),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        sizes = []
        for units in [int(s) for s in args.sizes.split(",")]:
            repeat = args.repeat if units <= 1000 else 1
            sizes.append(bench_size(root, units, env, repeat))
            print(f"... {units} units done", file=sys.stderr, flush=True)
        worker = bench_worker(root, env, args.repeat)
        print(report(sizes, worker))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
