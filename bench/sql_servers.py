"""PostgreSQL and MariaDB: `flamingock apply` vs `alembic upgrade head`, per-unit overhead, plan vs history size.

On throwaway servers from the test fixtures (``tests/fixtures/postgres_server.py``, ``mariadb_server.py``):

1. N DDL+DML changes (CREATE TABLE, CREATE INDEX, INSERT each) on a fresh database by `flamingock apply`
   (audit store and lease in the same database: TX_SHARED on PostgreSQL) vs `alembic upgrade head` on
   another fresh database of the same server; fresh processes, one run each. Goal: ratio <= 0.6.
2. Per-unit overhead over the raw driver, in one process: N one-INSERT units through the engine vs
   psycopg2 / mysqlclient running them one transaction each, best of 3; minus two audit appends. Goal <= 2 ms.
3. `flamingock plan` (in-process, median of 15) with 0 and 100,000 history entries. Goal: ratio <= 1.2.

    .venv/bin/python bench/sql_servers.py [--changes 200] [--history 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent


def statements(kind: str, i: int) -> list[str]:
    key = "id SERIAL PRIMARY KEY" if kind == "postgres" else "id INT AUTO_INCREMENT PRIMARY KEY"
    return [
        f"CREATE TABLE metric_{i:04d} ({key}, name VARCHAR(100) NOT NULL, value DOUBLE PRECISION)",
        f"CREATE INDEX ix_metric_{i:04d}_name ON metric_{i:04d} (name)",
        f"INSERT INTO metric_{i:04d} (name, value) VALUES ('seed', {i})",
    ]


def write_pipeline(root: Path, kind: str, n: int) -> Path:
    pipe = root / "bench_sql"
    (pipe / "01_schema").mkdir(parents=True)
    (pipe / "pipeline.yaml").write_text(
        "audit: {conn_id: bench_db}\ntargets:\n  db: {conn_id: bench_db}\nlock: {poke_interval_seconds: 0.1}\n"
    )
    for i in range(1, n + 1):
        body = "\n".join(f"    - {s!r}" for s in statements(kind, i))
        (pipe / "01_schema" / f"{i:04d}_metric_{i}.yaml").write_text(
            f"id: metric-{i}\nauthor: bench\ntemplate: sql\napply:\n  statements:\n{body}\n"
        )
    return pipe


def write_alembic(root: Path, kind: str, n: int, url: str) -> Path:
    env = root / "alembic"
    (env / "versions").mkdir(parents=True)
    ini = root / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {env}\nsqlalchemy.url = {url}\n")
    (env / "env.py").write_text(
        "from alembic import context\nfrom sqlalchemy import engine_from_config, pool\n"
        "cfg = context.config\n"
        "engine = engine_from_config(cfg.get_section(cfg.config_ini_section), prefix='sqlalchemy.', "
        "poolclass=pool.NullPool)\n"
        "with engine.connect() as conn:\n"
        "    context.configure(connection=conn, target_metadata=None)\n"
        "    with context.begin_transaction():\n"
        "        context.run_migrations()\n"
    )
    (env / "script.py.mako").write_text("")
    for i in range(1, n + 1):
        down = f"'{i - 1:04d}'" if i > 1 else "None"
        ops = "\n".join(f"    op.execute({s!r})" for s in statements(kind, i))
        (env / "versions" / f"{i:04d}_metric.py").write_text(
            f"from alembic import op\nrevision = '{i:04d}'\ndown_revision = {down}\n"
            f"branch_labels = None\ndepends_on = None\n\ndef upgrade():\n{ops}\n\ndef downgrade():\n    pass\n"
        )
    return ini


def run_timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def sqlalchemy_url(kind: str, server: Any, db: str) -> str:
    driver = "postgresql+psycopg2" if kind == "postgres" else "mysql+mysqldb"
    return f"{driver}://{server.user}@{server.host}:{server.port}/{db}"


def versus_alembic(kind: str, server: Any, n: int, root: Path, repeat: int) -> tuple[list[float], list[float]]:
    """Wall times of ``repeat`` alternating runs of each tool, every run a fresh process on a fresh database."""
    ours, theirs = [], []
    for r in range(repeat):
        pipe = write_pipeline(root / f"f{r}", kind, n)
        uri = server.create_database(f"fa{r}")
        env = {**os.environ, "FLAMINGOCK_HOME": str(root / f"home{r}"), "AIRFLOW_CONN_BENCH_DB": uri}
        ours.append(run_timed([str(BIN / "flamingock"), "apply", str(pipe)], env))
        server.create_database(f"al{r}")
        ini = write_alembic(root / f"a{r}", kind, n, sqlalchemy_url(kind, server, f"al{r}"))
        theirs.append(run_timed([str(BIN / "alembic"), "-c", str(ini), "upgrade", "head"], dict(os.environ)))
    return ours, theirs


def overhead(kind: str, server: Any, n: int, root: Path, repeat: int = 3) -> tuple[float, float, float]:
    """(engine ms per unit, raw driver ms per change, one audit append ms), best of ``repeat``, in this process.

    DML-only units (one INSERT each), so that the server's DDL time does not drown the engine's own cost.
    """
    from flamingock_provider import commands
    from tests.fixtures.sql_databases import SqlDatabase

    engine, raw, appends = [], [], []
    for r in range(repeat):
        uri = server.create_database(f"ov{r}")
        os.environ["AIRFLOW_CONN_BENCH_DB"] = uri
        db = SqlDatabase(kind, "postgres" if kind == "postgres" else "mysql", f"ov{r}", uri, server)
        db.connect().cursor().execute("CREATE TABLE facts (n INT)")
        pipe = root / f"o{r}" / "bench_dml"
        (pipe / "01_data").mkdir(parents=True)
        (pipe / "pipeline.yaml").write_text("audit: {conn_id: bench_db}\ntargets:\n  db: {conn_id: bench_db}\n")
        for i in range(1, n + 1):
            (pipe / "01_data" / f"{i:04d}_fact.yaml").write_text(
                f"id: fact-{i}\nauthor: bench\ntemplate: sql\napply: {{statements: 'INSERT INTO facts VALUES ({i})'}}\n"
            )
        commands.validate(pipe)  # parse once (templates imported) so the timing is the run
        start = time.perf_counter()
        result = commands.apply(pipe)
        engine.append(time.perf_counter() - start)
        assert len(result["applied"]) == n, result
        conn = db.connect()
        cur = conn.cursor()
        begin = "BEGIN" if kind == "postgres" else "START TRANSACTION"
        start = time.perf_counter()
        for i in range(1, n + 1):
            cur.execute(begin)
            cur.execute(f"INSERT INTO facts VALUES ({i})")
            cur.execute("COMMIT")
        raw.append(time.perf_counter() - start)
        conn.close()
        store = db.open_store("bench_db")
        appends.append(time_appends(store, n))
        store.close()
    return min(engine) / n * 1000, min(raw) / n * 1000, min(appends)


def time_appends(store: Any, count: int) -> float:
    from datetime import datetime, timezone

    from flamingock_provider.core.model import Action, AuditEntry, State

    def one(i: int) -> None:
        store.append(
            AuditEntry("x", "main", f"c{i}", "a", State.APPLIED, Action.APPLY, datetime.now(timezone.utc), "e")
        )

    start = time.perf_counter()
    for i in range(count):
        one(i)
    return (time.perf_counter() - start) / count * 1000


def plan_vs_history(kind: str, server: Any, history: int, root: Path) -> tuple[float, float]:
    from flamingock_provider import commands

    os.environ["AIRFLOW_CONN_BENCH_DB"] = server.create_database("pl")
    pipe = write_pipeline(root / "p", kind, 50)
    commands.plan(pipe)  # creates the tables and warms the process up
    commands.plan(pipe)
    empty = median_of(lambda: commands.plan(pipe))
    seed_history(kind, server, "pl", pipe.name, history)
    full = median_of(lambda: commands.plan(pipe))
    return empty, full


def seed_history(kind: str, server: Any, db: str, pipeline: str, count: int) -> None:
    """``count`` audit entries of the pipeline's own 50 changes (ROLLED_BACK: `plan` still says apply, as
    with no history, so both timings make the same decisions), written straight to the tables in batches."""
    import json
    from datetime import datetime, timezone

    conn = server.connect(db)
    cur = conn.cursor()
    now = datetime.now(timezone.utc)
    stamp = now if kind == "postgres" else now.replace(tzinfo=None)
    batch: list[tuple[Any, ...]] = []
    for i in range(count):
        change = f"metric-{i % 50 + 1}"
        entry = {"pipeline": pipeline, "stage": "schema", "change_id": change, "author": "bench",
                 "state": "ROLLED_BACK", "action": "undo", "created_at": now.isoformat(), "execution_id": f"e{i}"}  # fmt: skip
        batch.append((pipeline, change, "ROLLED_BACK", "undo", stamp, f"e{i}", json.dumps(entry)))
        if len(batch) == 5000 or i == count - 1:
            cur.executemany(
                "INSERT INTO flamingock_audit_log (pipeline, change_id, state, action, created_at, execution_id, "
                "entry) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                batch,
            )
            batch = []
    cur.execute(
        "INSERT INTO flamingock_audit_log_latest (pipeline, change_id, seq) SELECT pipeline, change_id, max(seq) "
        "FROM flamingock_audit_log GROUP BY pipeline, change_id"
    )
    for table in ("flamingock_audit_log", "flamingock_audit_log_latest"):  # what autovacuum / InnoDB do soon after
        cur.execute(f"ANALYZE {table}" if kind == "postgres" else f"ANALYZE TABLE {table}")
        if kind != "postgres":
            cur.fetchall()
    conn.close()


def median_of(fn: Callable[[], Any], runs: int = 15) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each tool (fresh processes); median shown")
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    from bench.common import machine_details
    from tests.fixtures.mariadb_server import start_mariadb
    from tests.fixtures.postgres_server import start_postgres

    print(machine_details())
    for kind, start in (("postgres", start_postgres), ("mariadb", start_mariadb)):
        server = start()
        if server is None:
            print(f"{kind}: not installed, skipped")
            continue
        root = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
        os.environ["FLAMINGOCK_HOME"] = str(root / "home")
        try:
            our_runs, their_runs = versus_alembic(kind, server, args.changes, root, args.repeat)
            per_unit, raw, append = overhead(kind, server, args.changes, root)
            empty, full = plan_vs_history(kind, server, args.history, root)
        finally:
            server.stop("immediate") if kind == "postgres" else server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
        ours, theirs = statistics.median(our_runs), statistics.median(their_runs)
        runs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(our_runs, their_runs, strict=True))
        print(f"{kind}: {args.changes} DDL+DML changes (3 statements each), fresh processes, median of {args.repeat}")
        print(
            f"  flamingock apply      {ours:7.3f} s   ({ours / args.changes * 1000:.2f} ms per change, audited + locked)"
        )
        print(f"  alembic upgrade head  {theirs:7.3f} s   ({theirs / args.changes * 1000:.2f} ms per revision)")
        print(f"  ratio flamingock/alembic = {ours / theirs:.2f}   (goal <= 0.6; runs ours/theirs s: {runs})")
        print(f"  per DML unit in-process: engine {per_unit:.2f} ms, raw driver {raw:.2f} ms, one audit append "
              f"{append:.2f} ms -> overhead beyond two appends {per_unit - raw - 2 * append:.2f} ms (goal <= 2 ms)")  # fmt: skip
        print(f"  plan: {empty * 1000:.1f} ms with 0 entries, {full * 1000:.1f} ms with {args.history:,} "
              f"-> ratio {full / empty:.2f} (goal <= 1.2)")  # fmt: skip


if __name__ == "__main__":
    main()
