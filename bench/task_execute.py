"""Inside an apply task: the work of ``execute()`` for one no-op SQLite unit, timed and profiled.

What the task does after Airflow has started it and parsed the DAG: open the workspace (the pipeline
from the parse cache, the embedded SQLite audit store), hold the lease (here taken and released, as
a task without a lock task does; a DAG's task adopts the lock task's lease instead), read the audit
state once, apply ``SELECT 1`` (run_always) with its two audit entries. The Airflow part (XCom pull
of the plan's hint, params, Jinja) is in the task log's ``execute took`` line that
``bench/airflow_run_cost.py`` reads from a real run.

    python bench/task_execute.py [--repeat 50] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import print_title

from tests.conftest import sql_unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="print the 25 costliest calls of one unit")
    args = parser.parse_args()
    print_title("execute() of one no-op SQLite unit, without Airflow around it")
    with tempfile.TemporaryDirectory(prefix="flamingock-bench-exec-") as tmp:
        root = Path(tmp)
        os.environ["FLAMINGOCK_HOME"] = str(root / "home")
        os.environ["AIRFLOW_CONN_WAREHOUSE_DB"] = f"sqlite:///{root / 'warehouse.db'}"
        folder = root / "noop"
        (folder / "01_main").mkdir(parents=True)
        (folder / "pipeline.yaml").write_text("targets:\n  warehouse: {conn_id: warehouse_db}\n")
        for n in range(1, 51):  # a pipeline of 50 units; the task loads and runs only its own
            (folder / "01_main" / f"{n:04d}_u{n}.yaml").write_text(sql_unit(f"u{n}", "SELECT 1", run_always="true"))

        from flamingock_provider.core.audit import RunInfo
        from flamingock_provider.hooks.flamingock import FlamingockHook

        def one(execution: str) -> None:
            with FlamingockHook(folder).workspace() as ws:
                unit = ws.pipeline.unit("u25")
                lease = ws.lease(f"bench/{execution}")
                lease.acquire()
                try:
                    run = RunInfo(execution_id=execution, owner=lease.owner, task_id="main.apply_u25")
                    engine = ws.engine(lease=lease, run=run)
                    result = engine.run_stage(ws.pipeline.stage(unit.stage), units=(unit,), compensate=False)
                    assert result.done == ["u25"], result
                finally:
                    lease.release()

        one("warm-up")  # imports, the parse cache, the store's schema
        samples = []
        for n in range(args.repeat):
            started = time.perf_counter()
            one(f"run-{n}")
            samples.append((time.perf_counter() - started) * 1000)
        print(
            f"median {statistics.median(samples):.1f} ms, p90 {sorted(samples)[int(len(samples) * 0.9)]:.1f} ms "
            f"over {args.repeat} runs (goal: the whole execute() < 50 ms)"
        )
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(one, "profiled")
            pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
