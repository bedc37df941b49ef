"""Throughput: one ``flamingock apply`` of 1,000 units against the same work done by Alembic or the raw driver.

    .venv/bin/python bench/throughput.py [--units 1000] [--backends sql,mongo,dynamodb]

One run each, as users run it: the ``flamingock`` CLI in a fresh process.

- SQL on SQLite: 1,000 ``sql`` units vs ``alembic upgrade head`` of 1,000 revisions with the same
  statements (the generators of ``bench/apply_vs_alembic.py``). Goal: ratio <= 1.0.
- MongoDB (SecantusDB): 1,000 ``mongo.insert`` units (TX_SHARED) vs 1,000 ``insert_one`` (majority
  writes, like the engine; the generators of ``bench/mongo_overhead.py``).
- DynamoDB (moto server): 1,000 ``dynamodb.put_items`` units of one item (TX_SHARED) vs 1,000 ``put_item``.

For the raw-driver comparisons the per-unit overhead is (CLI run - the same command with nothing
left to do - the raw loop) / units: the second run prices what a run pays once (process start,
imports, reading 1,000 unit files, connection, lease, one audit read). Goal: at most 2 ms plus two
audit writes, where one audit write is the engine's own ``record`` (lease check, fenced append) on
that store, empty, timed here as the median of 50.

On the moto server every TransactWriteItems deep-copies each table it touches (moto's rollback
snapshot), so a unit's transaction gets slower as the run fills the tables: the run's total of that
work is timed inside the server (it runs in this process) and the goal is judged without it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from common import (
    DYNAMO_HEADER,
    MotoTableWork,
    median_ms,
    mongo_server,
    moto_server,
    print_title,
    put_items_unit,
    quiet_airflow_logs,
    timed,
)

AUDIT_SAMPLES = 50
BUDGET_MS = 2.0  # per unit, on top of two audit writes
ITEMS_TABLE = "bench_items"


# -- shared measures ----------------------------------------------------------------------------


def audit_write_ms(root: Path, header: str, unit_yaml: str) -> float:
    """Median time of one audit write as the engine makes it, on a scratch pipeline of that store."""
    from flamingock_provider import commands
    from flamingock_provider.core.model import Action, State

    root.mkdir(parents=True)
    (root / "pipeline.yaml").write_text(f"id: audit_probe\n{header}")
    (root / "0001_probe.yaml").write_text(f"id: probe\nauthor: bench\n{unit_yaml}")
    samples = []
    with commands.workspace(root) as ws, commands.holding(ws) as lease:
        executor = ws.engine(lease=lease).executor
        unit = ws.pipeline.units[0]
        executor.record(unit, State.STARTED, Action.APPLY)  # connection, counters
        for n in range(AUDIT_SAMPLES):
            state = State.APPLIED if n % 2 else State.STARTED
            samples.append(timed(partial(executor.record, unit, state, Action.APPLY))[0])
    return median_ms(samples)


def cli_apply(pipeline: Path) -> float:
    """Wall time of ``flamingock apply --json`` in a fresh process (fails unless it exits 0)."""
    from mongo_overhead import cli_apply as run

    return float(run(pipeline)[0])


def versus_raw(
    name: str,
    units: int,
    raw: float,
    cli: float,
    idle: float,
    audit_ms: float,
    raw_label: str,
    *,
    emulated: float | None = None,
) -> None:
    """Print one raw-driver comparison; ``emulated``: seconds the server spent on emulator-only work."""
    per_unit = (cli - idle - raw) / units * 1000
    budget = BUDGET_MS + 2 * audit_ms
    print(f"\n{name}, {units:,} units, one run each")
    print(f"  {raw_label:<34} {raw:7.2f} s  {raw / units * 1000:6.2f} ms each")
    print(f"  {'flamingock apply (CLI)':<34} {cli:7.2f} s  {cli / units * 1000:6.2f} ms per unit, all in")
    print(f"  {'  same command, nothing pending':<34} {idle:7.2f} s  (fixed cost of a run)")
    print(f"  ratio flamingock / raw: {cli / raw:.2f}x all in, {(cli - idle) / raw:.2f}x without the fixed cost")
    print(f"  one audit write (engine record, fenced, on an empty store): {audit_ms:.2f} ms")
    print(f"  overhead per unit over the raw driver: {per_unit:.2f} ms")
    if emulated is not None:
        print(
            f"  of the run, {emulated:.2f} s went to moto's whole-table copies (one per TransactWriteItems and table, "
            f"growing with the tables; real DynamoDB has none)"
        )
        per_unit -= emulated / units * 1000
        print(f"  overhead per unit over the raw driver, without them: {per_unit:.2f} ms")
    verdict = "met" if per_unit <= budget else f"missed by {per_unit - budget:.2f} ms"
    print(f"  goal <= {BUDGET_MS:.0f} ms + 2 audit writes = {budget:.2f} ms per unit: {verdict}")


# -- SQL vs Alembic -----------------------------------------------------------------------------


def sql_vs_alembic(units: int, work: Path) -> None:
    from apply_vs_alembic import run_alembic, run_flamingock

    ours = run_flamingock(units)
    theirs = run_alembic(units)
    os.environ["FLAMINGOCK_HOME"] = str(work / "sql_probe_home")
    os.environ["AIRFLOW_CONN_BENCH_DB"] = f"sqlite:///{work / 'sql_probe.db'}"
    audit_ms = audit_write_ms(
        work / "sql_probe", "targets:\n  db: {conn_id: bench_db}\n", "template: sql\napply: {statements: 'SELECT 1'}\n"
    )
    per_unit = (ours - theirs) / units * 1000
    verdict = "met" if ours <= theirs else f"missed by {ours / theirs - 1:.0%}"
    print(f"\nSQL on SQLite, {units:,} units vs {units:,} Alembic revisions (3 statements each), one run each")
    print(f"  {'flamingock apply (CLI)':<34} {ours:7.2f} s  {ours / units * 1000:6.2f} ms per unit, audited + locked")
    print(f"  {'alembic upgrade head':<34} {theirs:7.2f} s  {theirs / units * 1000:6.2f} ms per revision")
    print(
        f"  ratio flamingock / alembic: {ours / theirs:.2f} (goal <= 1.0: {verdict}); difference per unit {per_unit:+.2f} ms"
    )
    print(f"  one audit write on the embedded store (engine record, fenced): {audit_ms:.2f} ms")


# -- MongoDB vs insert_one ----------------------------------------------------------------------


def mongo_vs_insert_one(units: int, work: Path) -> None:
    from mongo_overhead import CONN_ID, DATABASE, PIPELINE_YAML, raw_inserts, write_pipeline

    with mongo_server(work / "secantus") as server:
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = server.connection_json(DATABASE)
        raw = raw_inserts(server, units)
        pipe = write_pipeline(work / "mongo_units", units)
        cli = cli_apply(pipe)
        idle = cli_apply(pipe)
        audit_ms = audit_write_ms(
            work / "mongo_probe", PIPELINE_YAML, "template: mongo.insert\napply: {collection: p, documents: [{n: 1}]}\n"
        )
    versus_raw(
        "MongoDB (SecantusDB), mongo.insert units vs insert_one",
        units,
        raw,
        cli,
        idle,
        audit_ms,
        f"raw insert_one x{units:,}",
    )


# -- DynamoDB vs put_item -----------------------------------------------------------------------


def dynamodb_vs_put_item(units: int, work: Path) -> None:
    table_work = MotoTableWork()
    table_work.install()
    with moto_server() as moto:
        audit_ms = audit_write_ms(work / "dynamodb_probe", DYNAMO_HEADER, put_items_unit(0, ITEMS_TABLE))
        moto.reset()  # the run starts on empty tables, as the raw loop does
        client = moto.client("dynamodb")
        for table in (ITEMS_TABLE, "raw_items"):
            client.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        client.put_item(TableName="raw_items", Item={"id": {"S": "warm"}})
        raw, _ = timed(
            lambda: [
                client.put_item(TableName="raw_items", Item={"id": {"S": f"i{n}"}, "v": {"N": str(n)}})
                for n in range(units)
            ]
        )
        pipe = work / "dynamodb_units"
        pipe.mkdir()
        (pipe / "pipeline.yaml").write_text(DYNAMO_HEADER)
        for n in range(1, units + 1):
            (pipe / f"{n:04d}_item_{n}.yaml").write_text(
                f"id: item-{n}\nauthor: bench\n{put_items_unit(n, ITEMS_TABLE)}"
            )
        before = table_work.seconds
        cli = cli_apply(pipe)
        copies = table_work.seconds - before
        idle = cli_apply(pipe)
    versus_raw(
        "DynamoDB (moto server), dynamodb.put_items units vs put_item",
        units,
        raw,
        cli,
        idle,
        audit_ms,
        f"raw put_item x{units:,}",
        emulated=copies,
    )


# -- main ---------------------------------------------------------------------------------------

BACKENDS: dict[str, Callable[[int, Path], None]] = {
    "sql": sql_vs_alembic,
    "mongo": mongo_vs_insert_one,
    "dynamodb": dynamodb_vs_put_item,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    quiet_airflow_logs()
    started = time.perf_counter()
    print_title(
        f"Throughput: {args.units:,} units in one `flamingock apply` vs the same work done directly (issue 9, part 3)"
    )
    with tempfile.TemporaryDirectory(prefix="flamingock-throughput-") as tmp:
        for name in args.backends.split(","):
            if name not in BACKENDS:
                raise SystemExit(f"unknown backend {name!r}: use {', '.join(BACKENDS)}")
            work = Path(tmp) / name
            work.mkdir()
            BACKENDS[name](args.units, work)
    print(f"\n(whole run {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
