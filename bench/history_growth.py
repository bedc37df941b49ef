"""Audit history growth: plan and apply time, and store calls per run, with 0 to 100,000 entries stored.

    .venv/bin/python bench/history_growth.py [--quick] [--backends sqlite,mongo,dynamodb] [--sizes ...]

For each backend (embedded SQLite, MongoDB on SecantusDB, DynamoDB on the moto server) and each
history size N, a fresh store gets N audit entries, then the pipeline's own 20 applied units
(STARTED + APPLIED each, 40 entries more). The N entries are apply/undo cycles (STARTED, APPLIED,
STARTED, ROLLED_BACK) spread half over those 20 changes of the measured pipeline and half over 9
other pipelines, interleaved as runs would write them. Then, five times: ``commands.plan`` of the
pipeline, and ``commands.apply --until`` of its next 5 pending units (in-process, imports warm):
the table shows the best of the five times, and what each run sends to the audit store.

Loading: the embedded store gets every entry through its own append statement, all in one
transaction. MongoDB and DynamoDB are bulk-loaded directly with the store's own encoders
(``_to_document``, ``_entry_actions``), in insert_many / batch_write_item chunks of 1,000 / 25, plus
the sequence counter and the latest-entry items an append keeps. Before timing anything the script
checks, per backend, that this bulk load leaves exactly what ``store.append`` leaves (same rows,
documents or items) for a sample of entries.

DynamoDB stops at 10,000 entries by default (``--dynamodb-max``): the moto server deep-copies every
table a transaction touches and walks the whole table on every Query, work that grows with the
history and that real DynamoDB does not do. Its rows also show the times without that server work
(timed inside the server, which runs in this process).

Goals (issue 9): time flat within 2x from 0 to 100,000 entries; a constant number of store calls.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import (
    DYNAMO_HEADER,
    DynamoCalls,
    MongoCommands,
    MotoTableWork,
    SqliteStatements,
    best_ms,
    breakdown,
    calls,
    mongo_server,
    moto_server,
    print_title,
    put_items_unit,
    quiet_airflow_logs,
    timed,
)

SIZES = (0, 1_000, 10_000, 100_000)
QUICK_SIZES = (0, 1_000, 10_000)
DYNAMODB_MAX = 10_000  # on the moto server; see DynamoBackend.cap_reason
EXISTING = 20  # units of the measured pipeline already applied
NEW = 5  # units applied per timed run
REPEAT = 5  # timed runs per size (each applies the next NEW units); the best one is reported
OTHER_PIPELINES = 9
PIPELINE = "growth"
LOCK = "lock: {poke_interval_seconds: 0.1}\n"
CYCLE = (("STARTED", "apply"), ("APPLIED", "apply"), ("STARTED", "undo"), ("ROLLED_BACK", "undo"))
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


# -- the pipeline and its history ---------------------------------------------------------------


def write_pipeline(root: Path, header: str, unit_yaml: Any) -> Path:
    """The measured pipeline: EXISTING units already applied, then REPEAT batches of NEW pending ones."""
    root.mkdir(parents=True)
    (root / "pipeline.yaml").write_text(f"id: {PIPELINE}\n{header}{LOCK}")
    for n in range(1, EXISTING + NEW * REPEAT + 1):
        (root / f"{n:04d}_unit_{n}.yaml").write_text(f"id: unit-{n}\nauthor: bench\n{unit_yaml(n)}")
    return root


def stored_history(pipeline: Any, extra: int, strategy: str) -> list[Any]:
    """``extra`` earlier entries (half of them this pipeline's), then the EXISTING units' STARTED + APPLIED."""
    from flamingock_provider.core.audit import RunInfo, build_entry
    from flamingock_provider.core.model import Action, State, TxStrategy

    units = list(pipeline.units)[:EXISTING]
    run = RunInfo(execution_id="0" * 32, owner="bench", triggered_by="cli", hostname="bench")
    position: Counter[tuple[str, str]] = Counter()
    owners = [PIPELINE] + [f"other_{k}" for k in range(OTHER_PIPELINES)]
    picks = [
        (owners[0] if i % 2 == 0 else owners[1 + (i // 2) % OTHER_PIPELINES], units[(i // 2) % EXISTING])
        for i in range(extra)
    ]
    picks += [(PIPELINE, unit) for unit in units for _ in range(2)]
    entries = []
    for i, (owner, unit) in enumerate(picks):
        # the earlier runs cycle; the last two entries of each unit record its (final) apply
        state, action = CYCLE[position[owner, unit.id] % len(CYCLE) if i < extra else (i - extra) % 2]
        position[owner, unit.id] += 1
        entry = build_entry(
            pipeline,
            unit,
            replace(run, execution_id=f"{i // 2:032x}"),
            State(state),
            Action(action),
            strategy=TxStrategy(strategy),
            created_at=T0 + timedelta(seconds=i),
        )
        entries.append(entry if owner == PIPELINE else replace(entry, pipeline=owner))
    return entries


def per_pipeline_seq(entries: Iterable[Any]) -> list[tuple[int, Any]]:
    """(seq, entry) as the per-pipeline counters of the MongoDB and DynamoDB stores number them."""
    counters: Counter[str] = Counter()
    numbered = []
    for entry in entries:
        counters[entry.pipeline] += 1
        numbered.append((counters[entry.pipeline], entry))
    return numbered


# -- backends -----------------------------------------------------------------------------------


class Backend:
    """One audit store: how to make it fresh, bulk-load it, dump it, and count its calls."""

    name = ""
    strategy = "NON_TX"
    header = ""
    counter: Any

    def unit_yaml(self, n: int) -> str:
        raise NotImplementedError

    def fresh(self, label: str) -> None:
        """Point the connections at a new, empty store (and target) named ``label``."""
        raise NotImplementedError

    def bulk_load(self, store: Any, entries: Sequence[Any]) -> None:
        raise NotImplementedError

    def dump(self, store: Any) -> Any:
        """Everything the store keeps, comparable across two stores."""
        raise NotImplementedError

    def open_store(self, pipeline: Any) -> Any:
        from flamingock_provider.core.workspace import open_store

        return open_store(pipeline.audit)

    emulator: MotoTableWork | None = None  # server work that the real service does not do, to subtract
    cap_reason = ""

    def max_size(self, args: argparse.Namespace) -> int:
        return max(SIZES)


class SqliteBackend(Backend):
    name = "sqlite"
    strategy = "TX_SEPARATE"
    header = "targets:\n  db: {conn_id: bench_db}\n"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.counter = SqliteStatements()

    def unit_yaml(self, n: int) -> str:
        return f"template: sql\napply:\n  statements: ['CREATE TABLE t_{n} (id INTEGER PRIMARY KEY, v TEXT)']\n"

    def fresh(self, label: str) -> None:
        os.environ["FLAMINGOCK_HOME"] = str(self.work / f"sqlite_{label}")
        os.environ["AIRFLOW_CONN_BENCH_DB"] = f"sqlite:///{self.work / f'sqlite_{label}' / 'target.db'}"

    def bulk_load(self, store: Any, entries: Sequence[Any]) -> None:
        with store._write() as conn:  # the append's own statements, one transaction
            for entry in entries:
                store._append_in(conn, store._row(entry), entry, None)

    def dump(self, store: Any) -> Any:
        conn = store._conn()
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {name: conn.execute(f'SELECT * FROM "{name}" ORDER BY 1, 2').fetchall() for name in names}


class MongoBackend(Backend):
    name = "mongodb"
    strategy = "TX_SHARED"
    conn_id = "mongo_bench"
    header = f"audit: {{conn_id: {conn_id}}}\ntargets:\n  shop: {{conn_id: {conn_id}}}\ndefault_target: shop\n"

    def __init__(self, server: Any) -> None:
        self.server = server
        self.counter = MongoCommands()

    def unit_yaml(self, n: int) -> str:
        return f"template: mongo.insert\napply: {{collection: items, documents: [{{n: {n}}}]}}\n"

    def fresh(self, label: str) -> None:
        os.environ[f"AIRFLOW_CONN_{self.conn_id.upper()}"] = self.server.connection_json(f"growth_{label}")

    def bulk_load(self, store: Any, entries: Sequence[Any]) -> None:
        from flamingock_provider.stores.mongo import _to_document

        numbered = per_pipeline_seq(entries)
        docs = [_to_document(entry, seq) for seq, entry in numbered]
        for start in range(0, len(docs), 1000):
            store.audit.insert_many(docs[start : start + 1000])
        last: dict[str, int] = {}
        for seq, entry in numbered:
            last[entry.pipeline] = seq
        for pipeline, seq in last.items():  # the counter an append increments (in the lock document)
            store.locks.update_one({"_id": pipeline}, {"$max": {"seq": seq}}, upsert=True)
        self._load_latest(store, numbered, docs)

    def _load_latest(self, store: Any, numbered: Sequence[tuple[int, Any]], docs: Sequence[Any]) -> None:
        """The copies of each change's newest entry that appends keep (``latest_copy``)."""
        from flamingock_provider.stores.mongo import latest_copy

        newest = {(e.pipeline, e.change_id): doc for (_, e), doc in zip(numbered, docs, strict=True)}
        copies = [latest_copy(doc) for doc in newest.values()]
        for start in range(0, len(copies), 1000):
            store.latest_copies.insert_many(copies[start : start + 1000])

    def dump(self, store: Any) -> Any:
        db = store.db
        return {
            name: sorted(json.dumps(_without_object_id(d), sort_keys=True, default=str) for d in db[name].find())
            for name in sorted(db.list_collection_names())
        }


def _without_object_id(doc: dict[str, Any]) -> dict[str, Any]:
    from bson import ObjectId

    return {k: v for k, v in doc.items() if not isinstance(v, ObjectId)}


class DynamoBackend(Backend):
    name = "dynamodb"
    strategy = "TX_SHARED"
    header = DYNAMO_HEADER
    items_table = "bench_items"

    def __init__(self, moto: Any) -> None:
        self.moto = moto
        self.counter = DynamoCalls()
        self.emulator = MotoTableWork()

    def unit_yaml(self, n: int) -> str:
        return put_items_unit(n, self.items_table)

    def fresh(self, label: str) -> None:
        self.moto.reset()
        self.moto.client("dynamodb").create_table(
            TableName=self.items_table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    def bulk_load(self, store: Any, entries: Sequence[Any]) -> None:
        puts: list[dict[str, Any]] = []
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        counters: dict[str, int] = {}
        for seq, entry in per_pipeline_seq(entries):
            log, newest = store._entry_actions(replace(entry, seq=seq))  # the items append writes
            puts.append(log.action["Put"]["Item"])
            latest[entry.pipeline, entry.change_id] = newest.action["Put"]["Item"]
            counters[entry.pipeline] = seq
        puts += latest.values()
        puts += [{"pipeline": {"S": p}, "sk": {"S": "seq"}, "seq": {"N": str(n)}} for p, n in counters.items()]
        for start in range(0, len(puts), 25):
            request = {store.table: [{"PutRequest": {"Item": item}} for item in puts[start : start + 25]]}
            while request:
                request = store.client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    cap_reason = (
        "moto deep-copies every table a TransactWriteItems touches and walks the whole table on every Query, "
        "so its cost grows with the audit table (one 1-item transaction on a 100,000-item table takes ~2 s "
        "here): a 100,000-entry row would take many minutes and measure the emulator. Real DynamoDB's Query and "
        "transactions do not depend on table size. --dynamodb-max 100000 runs it anyway"
    )

    def max_size(self, args: argparse.Namespace) -> int:
        return int(args.dynamodb_max)

    def dump(self, store: Any) -> Any:
        out = {}
        for table in (store.table, store.lock_table):
            pages = store.client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
            out[table] = sorted(json.dumps(i, sort_keys=True) for page in pages for i in page["Items"])
        return out


# -- measuring ----------------------------------------------------------------------------------


def check_bulk_load(backend: Backend, work: Path) -> None:
    """Fail unless the bulk load leaves exactly what ``append`` leaves, for a sample of entries."""
    from flamingock_provider.core.loader import load_pipeline

    pipe = write_pipeline(work / "pipelines" / f"{backend.name}_check", backend.header, backend.unit_yaml)
    pipeline = load_pipeline(pipe)
    sample = stored_history(pipeline, 60, backend.strategy)
    dumps = []
    for label, load in (("append", None), ("bulk", backend.bulk_load)):
        backend.fresh(f"check_{label}")
        store = backend.open_store(pipeline)
        try:
            if load is None:
                for entry in sample:
                    store.append(entry)
            else:
                load(store, sample)
            dumps.append(backend.dump(store))
        finally:
            store.close()
    if dumps[0] != dumps[1]:
        raise SystemExit(f"FAILED: the {backend.name} bulk load differs from append; fix bench/history_growth.py")


def counted(backend: Backend, fn: Any) -> tuple[float, float, Any, Counter[str]]:
    """(seconds, seconds of emulator table work, result, store calls) of one run."""
    backend.counter.counts.clear()
    emulated = backend.emulator.seconds if backend.emulator else 0.0
    elapsed, result = timed(fn)
    emulated = (backend.emulator.seconds if backend.emulator else 0.0) - emulated
    return elapsed, emulated, result, Counter(backend.counter.counts)


def measure(backend: Backend, work: Path, size: int, label: str | None = None) -> dict[str, Any]:
    """Load ``size`` entries into a fresh store, then time and count REPEAT plan + apply runs."""
    from flamingock_provider import commands
    from flamingock_provider.core.loader import load_pipeline

    label = label or str(size)
    backend.fresh(label)
    pipe = write_pipeline(work / "pipelines" / f"{backend.name}_{label}", backend.header, backend.unit_yaml)
    pipeline = load_pipeline(pipe)
    entries = stored_history(pipeline, size, backend.strategy)
    store = backend.open_store(pipeline)
    try:
        load_s, _ = timed(lambda: backend.bulk_load(store, entries))
        read_ms = best_ms([timed(lambda: store.latest(PIPELINE))[0] for _ in range(REPEAT)])
    finally:
        store.close()
    plans, applies, plan_calls, apply_calls = [], [], [], []
    for batch in range(REPEAT):
        ids = [f"unit-{EXISTING + batch * NEW + k}" for k in range(1, NEW + 1)]
        elapsed, emulated, planned, used = counted(backend, lambda: commands.plan(pipe))
        pending = [c["id"] for c in planned["changes"] if c["action"] == "apply"]
        assert pending[:NEW] == ids, planned
        plans.append((elapsed, elapsed - emulated))
        plan_calls.append(used)
        elapsed, emulated, result, used = counted(backend, lambda ids=ids: commands.apply(pipe, until=ids[-1]))
        assert result["applied"] == ids and result["failed"] is None, result
        applies.append((elapsed, elapsed - emulated))
        apply_calls.append(used)
    return {
        "size": size,
        "stored": len(entries),
        "load_s": load_s,
        "read_ms": read_ms,
        "plan_ms": best_ms([p[0] for p in plans]),
        "apply_ms": best_ms([a[0] for a in applies]),
        "plan_own_ms": best_ms([p[1] for p in plans]),
        "apply_own_ms": best_ms([a[1] for a in applies]),
        "plan_calls": plan_calls,
        "apply_calls": apply_calls,
    }


def per_run(counts: Sequence[Counter[str]]) -> str:
    """The store calls of each run: one number when every run made as many."""
    totals = [calls(c) for c in counts]
    return str(totals[0]) if len(set(totals)) == 1 else "/".join(map(str, totals))


def report(backend: Backend, rows: list[dict[str, Any]]) -> None:
    emulated = backend.emulator is not None
    print(
        f"\n{backend.name}: {backend.strategy} units; {EXISTING} applied units + N entries stored; best of {REPEAT} runs"
    )
    extra = f" {'plan ms*':>8} {f'apply {NEW} ms*':>12}" if emulated else ""
    print(
        f"{'N entries':>10} {'stored':>8} {'load s':>7} {'plan ms':>8} {f'apply {NEW} ms':>11} {'plan calls':>10} "
        f"{'apply calls':>11} {'latest() ms':>11}{extra}"
    )
    for row in rows:
        plan_calls, apply_calls = per_run(row["plan_calls"]), per_run(row["apply_calls"])
        own = f" {row['plan_own_ms']:>8.1f} {row['apply_own_ms']:>12.1f}" if emulated else ""
        print(
            f"{row['size']:>10,} {row['stored']:>8,} {row['load_s']:>7.1f} {row['plan_ms']:>8.1f} "
            f"{row['apply_ms']:>11.1f} {plan_calls:>10} {apply_calls:>11} {row['read_ms']:>11.1f}{own}"
        )
    first, last = rows[0], rows[-1]
    constant = (
        len({calls(c) for r in rows for c in r["plan_calls"]}) == 1
        and len({calls(c) for r in rows for c in r["apply_calls"]}) == 1
    )
    print(
        f"ratio {last['size']:,}/{first['size']:,}: plan {last['plan_ms'] / first['plan_ms']:.2f}x, "
        f"apply {last['apply_ms'] / first['apply_ms']:.2f}x (goal <= 2x); store calls per run "
        f"{'constant' if constant else 'NOT constant'} (goal: constant)"
    )
    if emulated:
        print(
            f"  * without the moto server's whole-table copies and scans (timed inside the server): plan "
            f"{last['plan_own_ms'] / first['plan_own_ms']:.2f}x, apply {last['apply_own_ms'] / first['apply_own_ms']:.2f}x"
        )
    print(f"  plan run:  {breakdown(last['plan_calls'][0])}")
    print(f"  apply run: {breakdown(last['apply_calls'][0])}")


def backends(names: Sequence[str], work: Path, stack: Any) -> list[Backend]:
    chosen: list[Backend] = []
    for name in names:
        if name == "sqlite":
            chosen.append(SqliteBackend(work))
        elif name == "mongo":
            chosen.append(MongoBackend(stack.enter_context(mongo_server(work / "secantus"))))
        elif name == "dynamodb":
            chosen.append(DynamoBackend(stack.enter_context(moto_server())))
        else:
            raise SystemExit(f"unknown backend {name!r}: use sqlite, mongo, dynamodb")
    return chosen


def main() -> None:
    from contextlib import ExitStack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"sizes {', '.join(map(str, QUICK_SIZES))} only")
    parser.add_argument("--sizes", help="comma-separated history sizes (default 0,1000,10000,100000)")
    parser.add_argument("--backends", default="sqlite,mongo,dynamodb")
    parser.add_argument(
        "--dynamodb-max",
        type=int,
        default=DYNAMODB_MAX,
        help=f"largest history on the moto server (default {DYNAMODB_MAX:,}; moto's cost grows with the table)",
    )
    args = parser.parse_args()
    quiet_airflow_logs()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(QUICK_SIZES if args.quick else SIZES)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flamingock-growth-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        os.environ["FLAMINGOCK_HOME"] = str(work / "home")
        chosen = backends(args.backends.split(","), work, stack)
        for backend in chosen:
            backend.counter.install()
            if backend.emulator is not None:
                backend.emulator.install()
        print_title("History growth: plan and apply with N audit entries already stored (issue 9, part 2)")
        for backend in chosen:
            check_bulk_load(backend, work)
            measure(backend, work, 0, "warmup")  # imports, connections, code paths: not reported
            chosen_sizes = [n for n in sizes if n <= backend.max_size(args)]
            report(backend, [measure(backend, work, n) for n in chosen_sizes])
            if len(chosen_sizes) < len(sizes):
                print(f"  sizes over {backend.max_size(args):,} skipped: {backend.cap_reason}")
    print(f"\n(bulk loads checked equal to append on a sample; whole run {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
