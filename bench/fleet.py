"""Fleet rollouts (issue 19): 100 members x 10 units on SQLite, fleet mode against one member at a time.

1. Baseline: ``commands.apply(PIPE, member=M)`` for each of the 100 members in turn (what a script
   looping over the members with ``flamingock apply --member M`` pays, without the process starts).
2. Fleet: ``commands.apply(PIPE)`` (what ``flamingock apply PIPE`` runs) with ``max_parallel`` 1 and 8,
   each on fresh databases. Per-member overhead = fleet per member / baseline per member - 1.
3. Store queries of ``status``/``plan`` of the whole fleet at 10 and 100 members (SQLite trace
   callback on the audit store's connections): the goal is a constant count.
4. The Airflow run of the fleet DAG (``dag.test()`` on a migrated metadata DB: the session standalone
   is not needed for a wall time), ``run_mode: task_per_stage``: each wave is a task group mapped over
   its members (lock, plan, one task per stage, release: each member's task instances).

    python bench/fleet.py [--members 100] [--units 10] [--airflow-members 100] [--no-airflow]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, print_title


def pipeline_files(
    units: int, max_parallel: int, variable: str | None, members: list[dict[str, Any]]
) -> dict[str, str]:
    source = f"  members_from: {{variable: {variable}}}\n" if variable else f"  members: {json.dumps(members)}\n"
    files = {
        "pipeline.yaml": "targets:\n  app: {conn_id: bench_base}\nrun_mode: task_per_stage\n"
        f"fleet:\n{source}  waves: [1, '10%', rest]\n  max_parallel: {max_parallel}\n"
    }
    for n in range(1, units + 1):
        files[f"{n:04d}_t{n}.yaml"] = (
            f"id: t{n}\nauthor: bench\ntemplate: sql\napply: {{statements: 'CREATE TABLE t{n} (x INT)'}}\n"
            f"rollback: {{statements: 'DROP TABLE t{n}'}}\n"
        )
    return files


def setup(root: Path, n_members: int, units: int, max_parallel: int, variable: str | None = None) -> Path:
    """A fresh pipeline folder, audit store and one SQLite database per member under ``root``."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    os.environ["FLAMINGOCK_HOME"] = str(root / "home")
    members = []
    for i in range(n_members):
        name = f"m{i:03d}"
        os.environ[f"AIRFLOW_CONN_BENCH_{name.upper()}"] = f"sqlite:///{root / (name + '.db')}"
        members.append({"name": name, "targets": {"app": f"bench_{name}"}})
    if variable:
        os.environ[f"AIRFLOW_VAR_{variable.upper()}"] = json.dumps(members)
    pipe = root / "changes" / "fleet_bench"
    for rel, text in pipeline_files(units, max_parallel, variable, members).items():
        path = pipe / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pipe


def check_applied(root: Path, n_members: int, units: int) -> None:
    for i in (0, n_members - 1):
        with sqlite3.connect(root / f"m{i:03d}.db") as conn:
            count = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        assert count >= units, f"member m{i:03d} has {count} tables, expected {units}"


def cli_figures(root: Path, n_members: int, units: int) -> dict[str, float]:
    from flamingock_provider import commands

    figures: dict[str, float] = {}
    pipe = setup(root / "baseline", n_members, units, 1)
    started = time.perf_counter()
    for i in range(n_members):
        doc = commands.apply(pipe, member=f"m{i:03d}")
        assert not doc["failed"] and len(doc["applied"]) == units, doc
    figures["baseline"] = time.perf_counter() - started
    check_applied(root / "baseline", n_members, units)
    for parallel in (1, 8):
        pipe = setup(root / f"fleet{parallel}", n_members, units, parallel)
        started = time.perf_counter()
        doc = commands.apply(pipe)
        figures[f"fleet{parallel}"] = time.perf_counter() - started
        assert all(len(r["applied"]) == units and not r["failed"] for r in doc["members"]), doc
        check_applied(root / f"fleet{parallel}", n_members, units)
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "flamingock"), "status", str(pipe), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    figures["status_cli"] = time.perf_counter() - started
    assert len(json.loads(done.stdout)["members"]) == n_members
    return figures


def store_queries(root: Path, n_members: int, units: int) -> dict[str, int]:
    """Statements the audit store runs for the fleet's status and plan (after a full apply)."""
    from flamingock_provider import commands
    from flamingock_provider.stores import sqlite as sqlite_store

    pipe = setup(root / f"queries{n_members}", n_members, units, 8)
    commands.apply(pipe)
    seen: list[str] = []
    original = sqlite_store.SqliteStore._connect

    def traced(self: Any) -> sqlite3.Connection:
        conn = original(self)
        conn.set_trace_callback(seen.append)
        return conn

    sqlite_store.SqliteStore._connect = traced  # type: ignore[method-assign]
    try:
        out = {}
        for name, command in (("status", commands.status), ("plan", commands.plan)):
            seen.clear()
            doc = command(pipe)
            assert len(doc["members"]) == n_members
            out[name] = sum(1 for s in seen if s.lstrip().upper().startswith("SELECT"))
        return out
    finally:
        sqlite_store.SqliteStore._connect = original  # type: ignore[method-assign]


def airflow_figure(root: Path, n_members: int, units: int) -> float:
    """Wall time of one fleet DAG run through dag.test(), members from a Variable."""
    sys.path.insert(0, str(REPO))
    import tests.fixtures.airflow_env as env  # sets Airflow's environment before Airflow is imported

    env._write_dags_folder()
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, check=True)
    pipe = setup(root / "airflow", n_members, units, 8, variable="fleet_bench_members")
    target = env.CHANGES / "fleet_bench"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(pipe, target)
    from tests.fixtures.airflow_dags import load_dag, run_dag

    dag = load_dag("flamingock_fleet_bench")
    started = time.perf_counter()
    run = run_dag(dag)
    elapsed = time.perf_counter() - started
    assert run.state == "success", run.tasks
    check_applied(root / "airflow", n_members, units)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--units", type=int, default=10)
    parser.add_argument("--airflow-members", type=int, default=100)
    parser.add_argument("--no-airflow", action="store_true")
    args = parser.parse_args()
    print_title(f"Fleet: {args.members} members x {args.units} units on SQLite")
    root = Path(tempfile.mkdtemp(prefix="flamingock-bench-fleet-"))
    try:
        cli = cli_figures(root, args.members, args.units)
        per = {key: value / args.members * 1000 for key, value in cli.items() if key != "status_cli"}
        print(f"\n{'run':<46} {'total s':>9} {'ms/member':>10} {'overhead':>9}")
        rows = [
            ("one member at a time (apply --member), x N", "baseline"),
            ("fleet apply, max_parallel 1", "fleet1"),
            ("fleet apply, max_parallel 8", "fleet8"),
        ]
        for label, key in rows:
            overhead = per[key] / per["baseline"] - 1
            print(f"{label:<46} {cli[key]:>9.2f} {per[key]:>10.1f} {overhead:>+8.0%}")
        print(f"`flamingock status` of the fleet (a process): {cli['status_cli']:.2f} s")
        print("\naudit-store SELECTs of the whole fleet's status / plan (after a full apply)")
        for n in (10, args.members):
            counts = store_queries(root, n, args.units)
            print(f"  {n:>4} members: status {counts['status']}, plan {counts['plan']}")
        if not args.no_airflow:
            elapsed = airflow_figure(root, args.airflow_members, args.units)
            print(
                f"\nAirflow (dag.test, task_per_stage, max_parallel 8): {args.airflow_members} members in "
                f"{elapsed:.1f} s = {elapsed / args.airflow_members * 1000:.0f} ms/member"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
