"""200 SQL changes on a fresh SQLite database: `flamingock apply` vs Alembic `upgrade head`.

Same statements, same machine, one run; both as the command-line tools users run (fresh process).
Prints both wall times (median of REPEAT runs) and the ratio (goal ≤ 1.0), and the wall time of
`flamingock status` on the example pipeline (goal < 0.5 s).

    .venv/bin/python bench/apply_vs_alembic.py [--changes 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def statements(i: int) -> list[str]:
    return [
        f"CREATE TABLE metric_{i:04d} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, value REAL)",
        f"CREATE INDEX ix_metric_{i:04d}_name ON metric_{i:04d} (name)",
        f"INSERT INTO metric_{i:04d} (name, value) VALUES ('seed', {i})",
    ]


def write_flamingock(root: Path, n: int) -> Path:
    pipe = root / "bench_pipeline"
    (pipe / "01_schema").mkdir(parents=True)
    (pipe / "pipeline.yaml").write_text("targets:\n  db: {conn_id: bench_db}\n")
    for i in range(1, n + 1):
        body = "\n".join(f"    - {s!r}" for s in statements(i))
        (pipe / "01_schema" / f"{i:04d}_metric_{i}.yaml").write_text(
            f"id: metric-{i}\nauthor: bench\ntemplate: sql\napply:\n  statements:\n{body}\n"
        )
    return pipe


def write_alembic(root: Path, n: int, db: Path) -> Path:
    env = root / "alembic"
    (env / "versions").mkdir(parents=True)
    ini = root / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {env}\nsqlalchemy.url = sqlite:///{db}\n")
    (env / "env.py").write_text(
        "from alembic import context\nfrom sqlalchemy import engine_from_config, pool\n"
        "cfg = context.config\n"
        "engine = engine_from_config(cfg.get_section(cfg.config_ini_section), prefix='sqlalchemy.', poolclass=pool.NullPool)\n"
        "with engine.connect() as conn:\n"
        "    context.configure(connection=conn, target_metadata=None)\n"
        "    with context.begin_transaction():\n"
        "        context.run_migrations()\n"
    )
    (env / "script.py.mako").write_text("")
    for i in range(1, n + 1):
        down = f"'{i - 1:04d}'" if i > 1 else "None"
        ops = "\n".join(f"    op.execute({s!r})" for s in statements(i))
        (env / "versions" / f"{i:04d}_metric.py").write_text(
            f"from alembic import op\nrevision = '{i:04d}'\ndown_revision = {down}\n"
            f"branch_labels = None\ndepends_on = None\n\ndef upgrade():\n{ops}\n\ndef downgrade():\n    pass\n"
        )
    return ini


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def run_flamingock(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pipe = write_flamingock(root, n)
        env = {
            **os.environ,
            "FLAMINGOCK_HOME": str(root / "home"),
            "AIRFLOW_CONN_BENCH_DB": f"sqlite:///{root / 'f.db'}",
        }
        return timed([str(BIN / "flamingock"), "apply", str(pipe)], env)


def run_alembic(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ini = write_alembic(root, n, root / "a.db")
        return timed([str(BIN / "alembic"), "-c", str(ini), "upgrade", "head"], dict(os.environ))


def run_status() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "FLAMINGOCK_HOME": tmp,
            "AIRFLOW_CONN_WAREHOUSE_DB": f"sqlite:///{tmp}/w.db",
        }
        return timed([str(BIN / "flamingock"), "status", str(REPO / "dags/changes/warehouse")], env)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ours = statistics.median(run_flamingock(args.changes) for _ in range(args.repeat))
    theirs = statistics.median(run_alembic(args.changes) for _ in range(args.repeat))
    status = statistics.median(run_status() for _ in range(5))
    print(f"{args.changes} SQL changes on a fresh SQLite database (median of {args.repeat} runs, fresh processes)")
    print(f"  flamingock apply      {ours:7.3f} s   ({ours / args.changes * 1000:.2f} ms per change, audited + locked)")
    print(f"  alembic upgrade head  {theirs:7.3f} s   ({theirs / args.changes * 1000:.2f} ms per revision)")
    print(f"  ratio flamingock/alembic = {ours / theirs:.2f}   (goal <= 1.0)")
    print(f"flamingock status on dags/changes/warehouse: {status:.3f} s   (goal < 0.5 s)")


if __name__ == "__main__":
    main()
