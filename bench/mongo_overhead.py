"""What the engine costs on MongoDB: 500 ``mongo.insert`` units through ``flamingock apply`` vs 500 ``insert_one``.

One SecantusDB server (the test server, in its own process) serves both sides. Printed:

- wall time of 500 raw ``insert_one`` calls (majority write concern, like the engine);
- the engine applying 500 pending units in-process (imports warm), hence the per-unit overhead and
  the ratio over a raw insert;
- wall time of ``flamingock apply`` for 500 pending units, and of the same command with nothing left
  to do (process start, Airflow import, connection, lease, one audit read);
- the audit-store commands one run sends (pymongo command monitoring), for 0, 100 and 500 units
  already applied: constant, because the audit state is read with one aggregate per run.

Run: ``.venv/bin/python bench/mongo_overhead.py [--units 500]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pymongo import monitoring

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.mongo_server import MongoServer  # noqa: E402

CONN_ID = "mongo_bench"
DATABASE = "bench"
AUDIT_COLLECTIONS = frozenset({"flamingock_audit_log", "flamingock_audit_log_latest", "flamingock_lock"})
PIPELINE_YAML = f"""\
audit: {{conn_id: {CONN_ID}}}
targets:
  shop: {{conn_id: {CONN_ID}}}
default_target: shop
lock: {{poke_interval_seconds: 0.1}}
"""


class StoreCommands(monitoring.CommandListener):
    """Counts commands on the audit collections (and the store's own admin commands)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        if not isinstance(target, str):  # killSessions names sessions, not a collection
            target = ""
        if target in AUDIT_COLLECTIONS or event.command_name in ("killSessions", "commitTransaction"):
            self.counts[f"{event.command_name} {target}".strip()] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def write_pipeline(root: Path, units: int, *, first: int = 1) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pipeline.yaml").write_text(PIPELINE_YAML)
    for n in range(first, first + units):
        (root / f"{n:04d}_item_{n}.yaml").write_text(
            f"id: item-{n}\nauthor: bench\ntemplate: mongo.insert\n"
            f"apply: {{collection: items_{root.name}, documents: [{{n: {n}, name: item {n}}}]}}\n"
        )
    return root


def raw_inserts(server: MongoServer, units: int) -> float:
    client = server.client(w="majority")
    collection = client[DATABASE].raw_items
    collection.insert_one({"warm": True})
    started = time.perf_counter()
    for n in range(1, units + 1):
        collection.insert_one({"n": n, "name": f"item {n}"})
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed


def cli_apply(pipeline: Path) -> tuple[float, dict[str, Any]]:
    command = [str(Path(sys.executable).parent / "flamingock"), "apply", str(pipeline), "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"flamingock apply failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, json.loads(done.stdout)


def store_commands(listener: StoreCommands, pipeline: Path) -> Counter[str]:
    from flamingock_provider import commands

    listener.counts.clear()
    commands.apply(pipeline)
    return Counter(listener.counts)


def command_table(listener: StoreCommands, work: Path, big: Path) -> list[tuple[int, int, int, str]]:
    """(already applied, commands with nothing pending, commands for one new unit, breakdown)."""
    from flamingock_provider import commands

    medium = write_pipeline(work / "medium", 100)
    commands.apply(medium)
    rows = []
    for applied, pipeline in ((0, write_pipeline(work / "empty", 0)), (100, medium), (big_count(big), big)):
        idle = store_commands(listener, pipeline)
        write_pipeline(pipeline, 1, first=applied + 1)
        one = store_commands(listener, pipeline)
        rows.append(
            (applied, sum(idle.values()), sum(one.values()), ", ".join(f"{k}={v}" for k, v in sorted(one.items())))
        )
    return rows


def big_count(pipeline: Path) -> int:
    return len(list(pipeline.glob("*.yaml"))) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=500)
    units = parser.parse_args().units
    listener = StoreCommands()
    monitoring.register(listener)  # before any client exists
    with tempfile.TemporaryDirectory(prefix="flamingock-bench-") as tmp:
        work = Path(tmp)
        server = MongoServer(work / "secantus").start()
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = server.connection_json(DATABASE)
        os.environ["FLAMINGOCK_HOME"] = str(work / "home")
        try:
            report(server, work, units, listener)
        finally:
            server.stop()


def in_process_apply(pipeline: Path) -> float:
    from flamingock_provider import commands

    commands.apply(write_pipeline(pipeline.parent / "warmup", 1))  # imports, connection, code paths
    started = time.perf_counter()
    result = commands.apply(pipeline)
    elapsed = time.perf_counter() - started
    assert result["failed"] is None and result["applied"], result
    return elapsed


def report(server: MongoServer, work: Path, units: int, listener: StoreCommands) -> None:
    raw = raw_inserts(server, units)
    engine = in_process_apply(write_pipeline(work / "engine", units))
    cli, result = cli_apply(write_pipeline(work / "big", units))
    assert len(result["applied"]) == units, result
    fixed = statistics.median(cli_apply(work / "big")[0] for _ in range(3))
    raw_unit, engine_unit = raw / units, engine / units
    print(f"server: SecantusDB {server.uri} (replica set, majority writes); {units} units, one run each\n")
    print(f"raw insert_one x{units}:                      {raw:6.2f} s  {raw_unit * 1000:6.2f} ms/insert")
    print(f"engine, {units} mongo.insert units (in-process): {engine:6.2f} s  {engine_unit * 1000:6.2f} ms/unit")
    print(f"  overhead per unit over a raw insert:      {(engine_unit - raw_unit) * 1000:6.2f} ms")
    print(f"  ratio unit / raw insert:                  {engine_unit / raw_unit:6.1f} x")
    print(f"`flamingock apply`, {units} pending (CLI):     {cli:6.2f} s")
    print(f"`flamingock apply`, nothing pending (median of 3): {fixed:6.2f} s  (start, imports, lease, one read)")
    print(f"  CLI run / raw loop:                       {cli / raw:6.1f} x\n")
    print("audit-store commands per run (in-process apply; TX_SHARED units):")
    print(f"{'already applied':>16} {'nothing pending':>16} {'one new unit':>13}  breakdown (one new unit)")
    for applied, idle_count, one_count, breakdown in command_table(listener, work, work / "big"):
        print(f"{applied:>16} {idle_count:>16} {one_count:>13}  {breakdown}")


if __name__ == "__main__":
    main()
