"""Fault-injection figures (issue 8): the scenarios of tests/reliability, one table per backend.

Real ``flamingock`` processes (forked from a warm runner, see tests/reliability/runner.py) against the
suite's own servers: SQLite files, SecantusDB, the moto server and Redis. Per backend and scenario:
runner processes started, SIGKILLs, takeovers of a frozen holder, store outages, and then what must be
zero — duplicates (a unit applied twice, by the audit log or by the target) and lost entries (applied
without an audit entry, or recorded without being applied) — plus failed scenarios and the wall time.
The loader section counts the hostile pipelines and fuzzed inputs tried.

    .venv/bin/python bench/faults.py                       # full counts, as `make reliability`
    .venv/bin/python bench/faults.py --quick               # the reduced counts of `make test`
    .venv/bin/python bench/faults.py --backend mongo --backend redis

Exits 1 when a figure that must be zero is not.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flamingock_provider.cli.render import table  # noqa: E402
from tests.reliability import scenarios  # noqa: E402
from tests.reliability.backends import BACKENDS, Backend, SqliteBackend, make_backend  # noqa: E402
from tests.reliability.corpus import FAILING, REJECTED, check_failing, check_rejected  # noqa: E402
from tests.reliability.fuzz import loader_fuzz  # noqa: E402
from tests.reliability.helpers import FULL, REDUCED, Counts, Tally  # noqa: E402
from tests.reliability.outages import outage_for  # noqa: E402
from tests.reliability.pool import RunnerPool, runner_env  # noqa: E402
from tests.reliability.servers import Servers  # noqa: E402

HEADERS = ["SCENARIO", "RUNS", "KILLS", "TAKEOVERS", "OUTAGES", "INPUTS", "DUPLICATES", "LOST", "FAILED", "SECONDS"]
Scenario = Callable[[], Tally]


def backend_scenarios(
    pool: RunnerPool, backend: Backend, servers: Servers, counts: Counts
) -> list[tuple[str, Scenario]]:
    found: list[tuple[str, Scenario]] = [
        (f"race {counts.processes}x{counts.units} x{counts.repeats}", lambda: scenarios.race(pool, backend, counts)),
        (f"kills x{counts.kills}", lambda: scenarios.kills(pool, backend, counts, zlib.crc32(backend.name.encode()))),
    ]
    for freeze in scenarios.freezes(backend):
        found.append((f"frozen {freeze.name}", partial(scenarios.fencing, pool, backend, freeze, counts.takeovers)))
    found.append((f"clock skew ±{scenarios.SKEW_S:.0f}s race", lambda: scenarios.skew(pool, backend, counts)))
    short = scenarios.SHORT_LEASE_S  # taken over only on a host clock; server clocks make it safe
    found.append(
        (f"clock skew standoff, {short:.0f}s lease", lambda: _standoff(pool, backend, short, backend.host_clock))
    )
    if backend.host_clock:
        lease = scenarios.skew_lease(backend)
        found.append((f"clock skew standoff, {lease:.0f}s lease", lambda: _standoff(pool, backend, lease, False)))
    found.append(
        ("store outage", lambda: scenarios.outage(pool, backend, outage_for(backend, servers), counts.outages))
    )
    return found


def _standoff(pool: RunnerPool, backend: Backend, lease_s: float, takeover: bool) -> Tally:
    """A takeover of a live lease is expected only from a host-clock store with a lease shorter than the skew."""
    tally, took_over = scenarios.skew_standoff(pool, backend, lease_s)
    assert took_over is takeover, f"{backend.name}: took the lease over: {took_over}, expected {takeover}"
    return tally


def loader_scenarios(pool: RunnerPool, root: Path, counts: Counts) -> list[tuple[str, Scenario]]:
    def corpus() -> Tally:
        backend = SqliteBackend(root / "hostile")
        backend.prepare()
        tally = Tally()
        for case in REJECTED:
            check_rejected(pool, backend, root / "changes", case)
            tally.inputs += 1
            tally.runs += 1
        for case in FAILING:
            check_failing(pool, backend, root / "changes", case)
            tally.inputs += 1
            tally.runs += 1
        return tally

    def fuzz() -> Tally:
        run, tried = loader_fuzz(counts.fuzz_examples)
        run()
        return Tally(inputs=tried[0])

    return [(f"hostile corpus ({len(REJECTED) + len(FAILING)} pipelines)", corpus), ("loader fuzz (hypothesis)", fuzz)]


def run_section(title: str, cases: list[tuple[str, Scenario]]) -> Tally:
    rows, total, failures = [], Tally(), 0
    for name, scenario in cases:
        started = time.monotonic()
        failed = 0
        try:
            tally = scenario()
        except Exception:  # a failed scenario is a figure too: print it, go on
            tally, failed = Tally(), 1
            print(f"[{title}] {name} FAILED:\n{traceback.format_exc()}", file=sys.stderr)
        failures += failed
        for problem in tally.problems:
            print(f"[{title}] {name}: {problem}", file=sys.stderr)
        total += tally
        rows.append([name, *_figures(tally), failed, f"{time.monotonic() - started:.1f}"])
    rows.append(["total", *_figures(total), failures, ""])
    print(f"\n{title}\n{table(HEADERS, rows)}", flush=True)
    total.problems.extend(["failed"] * failures)
    return total


def _figures(t: Tally) -> list[int]:
    return [t.runs, t.kills, t.takeovers, t.outages, t.inputs, t.duplicates, t.lost]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced counts of `make test`")
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="only these backends (repeatable)")
    parser.add_argument("--no-loader", action="store_true", help="skip the hostile corpus and the fuzz")
    args = parser.parse_args()
    counts = REDUCED if args.quick else FULL
    print(
        f"flamingock fault figures ({'quick' if args.quick else 'full'} counts) on {platform.node()}: "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}"
    )
    print(counts)
    root = Path(tempfile.mkdtemp(prefix="flamingock_faults_"))
    servers = Servers(root / "servers")
    pool = RunnerPool(root / "runners", runner_env(root)).start()
    summary: list[list[object]] = []
    clean = True
    try:
        for name in args.backend or BACKENDS:
            backend = make_backend(name, root / name, servers)
            try:
                total = run_section(f"backend: {name}", backend_scenarios(pool, backend, servers, counts))
            finally:
                backend.close()
            summary.append([name, *_figures(total), total.problems.count("failed")])
            clean &= total.duplicates == total.lost == 0 and "failed" not in total.problems
        if not args.no_loader:
            total = run_section("loader: hostile input", loader_scenarios(pool, root / "loader", counts))
            summary.append(["loader", *_figures(total), total.problems.count("failed")])
            clean &= "failed" not in total.problems
    finally:
        pool.close()
        servers.close()
    print(f"\nsummary\n{table(['BACKEND', *HEADERS[1:-1]], summary)}")
    print("\nduplicates and lost entries must be 0:", "OK" if clean else "NOT OK")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
