"""Airflow metrics reach a real StatsD server (UDP on localhost) through Airflow's own Stats."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest

from flamingock_provider import commands, metrics
from flamingock_provider.core.sinks import configured_sinks
from tests.conftest import sql_unit, write_tree
from tests.fixtures.airflow_dags import load_dag, make_pipeline, run_dag
from tests.fixtures.airflow_env import DAGS_FOLDER
from tests.fixtures.statsd_server import StatsdServer, counted, timings

PIPELINE = "targets:\n  warehouse: {conn_id: warehouse_db}\nlock: {poke_interval_seconds: 0.1}\n"
OK = sql_unit("a", "CREATE TABLE a (x INT)", "DROP TABLE a")
BROKEN = sql_unit("b", "INSERT INTO nope VALUES (1)")


def test_unit_counters_and_durations_of_a_runner(tmp_path: Path, sqlite_target: Path, statsd: StatsdServer) -> None:
    pipe = write_tree(tmp_path / "shop", {"pipeline.yaml": PIPELINE, "0001_a.yaml": OK, "0002_b.yaml": BROKEN})
    assert commands.apply(pipe)["failed"]["id"] == "b"
    (pipe / "0002_b.yaml").unlink()
    assert commands.undo(pipe, last=1)["rolled_back"] == ["a"]
    lines = statsd.wait_for(lambda got: counted(got, "flamingock.unit.rolled_back.shop") == 1)
    for name in ("applied", "failed", "rolled_back"):
        assert counted(lines, f"flamingock.unit.{name}") == 1, lines  # tags: plain StatsD drops them
        assert counted(lines, f"flamingock.unit.{name}.shop") == 1, lines
    assert counted(lines, "flamingock.unit.rollback_failed.shop") == 0
    # APPLIED, FAILED and ROLLED_BACK carry execution_ms; STARTED does not
    assert len(timings(lines, "flamingock.unit.duration.shop")) == 3, lines
    assert all(ms >= 0 for ms in timings(lines, "flamingock.unit.duration"))


def test_the_sink_is_on_only_where_airflow_sends_metrics(
    statsd_server: StatsdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in statsd_server.env:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "False")
    assert metrics.metrics_enabled() is False
    assert not any(isinstance(s, metrics.StatsSink) for s in configured_sinks(""))
    monkeypatch.setenv("AIRFLOW__METRICS__OTEL_ON", "True")
    assert metrics.metrics_enabled() is True
    assert any(isinstance(s, metrics.StatsSink) for s in configured_sinks(""))


def test_airflow_runs_send_unit_metrics_and_ship_jsonl(
    changes: Path, sqlite_target: Path, statsd: StatsdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "audit.jsonl"
    monkeypatch.setenv("FLAMINGOCK_AUDIT_SINKS", "jsonl")
    monkeypatch.setenv("FLAMINGOCK_AUDIT_JSONL", str(shipped))
    units = {"01_s/0001_a.yaml": OK, "01_s/0002_b.yaml": BROKEN}
    make_pipeline(changes, "metered", units, PIPELINE + "on_failure: rollback_stage\n")
    run = run_dag(load_dag("flamingock_metered"))
    assert run.state == "failed" and run.tasks["s.rollback"] == "success", run.tasks
    lines = statsd.wait_for(lambda got: counted(got, "flamingock.unit.rolled_back.metered") == 1)
    assert [counted(lines, f"flamingock.unit.{n}.metered") for n in ("applied", "failed", "rolled_back")] == [1, 1, 1]
    assert len(timings(lines, "flamingock.unit.duration.metered")) == 3, lines
    entries = [json.loads(line) for line in shipped.read_text().splitlines()]
    durable = [(e["change_id"], e["state"]) for e in entries if e["state"] != "STARTED"]
    assert durable == [("a", "APPLIED"), ("b", "FAILED"), ("a", "ROLLED_BACK")], entries
    assert {e["dag_id"] for e in entries} == {"flamingock_metered"}


TIMED_LOCK_DAG = '''
"""The provider's lock sensor, which records the lock wait when it takes the lease."""
from airflow.sdk import DAG

from flamingock_provider.operators.apply import FlamingockApplyOperator
from flamingock_provider.operators.release import FlamingockReleaseOperator
from flamingock_provider.sensors.lock import FlamingockLockSensor


with DAG(dag_id="timed_lock", schedule=None) as dag:
    lock = FlamingockLockSensor(task_id="lock", pipeline_dir="changes/waited", mode="reschedule", poke_interval=0.2)
    apply = FlamingockApplyOperator(task_id="apply", pipeline_dir="changes/waited", unit_id="a", lock_task_id="lock")
    release = FlamingockReleaseOperator(task_id="release", pipeline_dir="changes/waited", lock_task_id="lock")
    lock >> apply >> release.as_teardown(setups=lock)
'''


@pytest.fixture
def timed_lock_dag(changes: Path) -> Iterator[Path]:
    path = DAGS_FOLDER / "timed_lock.py"
    path.write_text(TIMED_LOCK_DAG)
    yield path
    path.unlink()


def test_lock_wait_runs_from_the_first_poke_to_the_lease(
    changes: Path, sqlite_target: Path, statsd: StatsdServer, timed_lock_dag: Path
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    folder = make_pipeline(changes, "waited", {"0001_a.yaml": OK}, PIPELINE)
    with commands.workspace(folder) as ws:
        assert ws.lease("cli/other-host/1/x").try_acquire() is not None
    # Freed 3 s from now: the first poke comes within 2 s (parse, dag.test set-up), so the wait is over 1 s.
    freeing = threading.Timer(3.0, lambda: commands.unlock(folder, force=True))
    freeing.start()
    try:
        bag = DagBag(dag_folder=str(timed_lock_dag))
        assert not bag.import_errors, bag.import_errors
        run = run_dag(bag.dags["timed_lock"])
    finally:
        freeing.cancel()
    assert run.state == "success", run.tasks
    lines = statsd.wait_for(lambda got: bool(timings(got, "flamingock.lock.wait.waited")))
    (waited,) = timings(lines, "flamingock.lock.wait.waited")
    assert waited >= 1000, lines  # the lease was held a second and more after the first poke
    assert timings(lines, "flamingock.lock.wait") == [waited]


def test_lock_wait_is_never_negative_and_skipped_without_a_start(statsd: StatsdServer) -> None:
    now = datetime.now(timezone.utc)
    metrics.record_lock_wait("inventory", since=now - timedelta(seconds=2), now=now)
    metrics.record_lock_wait("inventory", since=now + timedelta(seconds=5), now=now)
    metrics.record_lock_wait("inventory", since=None)
    lines = statsd.wait_for(lambda got: len(timings(got, "flamingock.lock.wait.inventory")) == 2)
    assert timings(lines, "flamingock.lock.wait.inventory") == [2000.0, 0.0]


def test_a_deferrable_wait_passes_its_start_as_epoch_seconds(statsd: StatsdServer) -> None:
    started_at = datetime.now(timezone.utc).timestamp() - 3  # what the lock trigger carries
    metrics.lease_acquired(cast(Any, {}), "deferred", since=started_at)
    lines = statsd.wait_for(lambda got: bool(timings(got, "flamingock.lock.wait.deferred")))
    (waited,) = timings(lines, "flamingock.lock.wait.deferred")
    assert 3000 <= waited < 60_000


def test_tag_aware_statsd_gets_the_pipeline_and_state_as_tags(
    tmp_path: Path, sqlite_target: Path, statsd: StatsdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk._shared.observability.metrics import stats as backend
    from airflow.sdk.observability.metrics import stats_utils

    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED", "True")
    backend.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    pipe = write_tree(tmp_path / "tagged", {"pipeline.yaml": PIPELINE, "0001_a.yaml": OK})
    assert commands.apply(pipe)["applied"] == ["a"]
    lines = statsd.wait_for(lambda got: "airflow.flamingock.unit.applied,pipeline=tagged:1|c" in got)
    assert "airflow.flamingock.unit.applied,pipeline=tagged:1|c" in lines, lines
    assert any(line.startswith("airflow.flamingock.unit.duration,pipeline=tagged,state=APPLIED:") for line in lines)
