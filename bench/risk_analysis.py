"""What risk analysis costs: sqlglot reading statements per dialect, and a whole pipeline's `validate` risks.

1. Statements: a mix of DDL and DML (every rule of ``templates/_sql_risk.py`` once) read N times per dialect.
2. Pipeline: M SQL units of 5 statements each, ``pipeline_risks`` over the loaded pipeline.

    python bench/risk_analysis.py [--repeat 200] [--units 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import print_title

from flamingock_provider.core.loader import load_pipeline
from flamingock_provider.targets.risk import pipeline_risks
from flamingock_provider.templates._sql_risk import analyse
from tests.conftest import sql_unit, write_tree

MIX = [
    "CREATE TABLE t (a INT, b TEXT)",
    "INSERT INTO t VALUES (1, 'x')",
    "UPDATE t SET b = 'y' WHERE a = 1",
    "DELETE FROM t WHERE a > 10",
    "ALTER TABLE t ADD COLUMN c INT NOT NULL",
    "ALTER TABLE t ALTER COLUMN c TYPE BIGINT",
    "CREATE INDEX i ON t (b)",
    "ALTER TABLE t DROP COLUMN c",
    "DROP TABLE t",
    "SELEC broken",
]


def statements(repeat: int) -> None:
    print_title(f"sqlglot: {len(MIX)} statements x {repeat}")
    for dialect in ("sqlite", "postgres", "mysql", None):
        start = time.perf_counter()
        for _ in range(repeat):
            analyse(MIX, dialect)
        per = (time.perf_counter() - start) / (repeat * len(MIX)) * 1e6
        print(f"  {dialect or 'generic':<9} {per:8.0f} µs per statement")


def pipeline(units: int) -> None:
    print_title(f"pipeline_risks: {units} SQL units x 5 statements")
    body = "; ".join(MIX[:5])
    with tempfile.TemporaryDirectory() as tmp:
        files = {"pipeline.yaml": "targets:\n  wh: {conn_id: bench_wh}\ndefault_target: wh\n"}
        files |= {f"{n + 1:04}_u{n}.yaml": sql_unit(f"u{n}", body) for n in range(units)}
        loaded = load_pipeline(write_tree(Path(tmp) / "p", files))
        start = time.perf_counter()
        pipeline_risks(loaded)
        took = time.perf_counter() - start
    print(f"  {took:.2f} s in all, {took / units * 1000:.1f} ms per unit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--units", type=int, default=500)
    args = parser.parse_args()
    statements(args.repeat)
    pipeline(args.units)


if __name__ == "__main__":
    main()
