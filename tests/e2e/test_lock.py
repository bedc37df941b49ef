"""The deferrable lock: the trigger (serialization, waiting, timeout) and a real triggerer run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from airflow.triggers.base import TriggerEvent

from flamingock_provider import commands
from flamingock_provider.core.model import AuditConfig, LockConfig, LockMode
from flamingock_provider.core.paths import embedded_store_path
from flamingock_provider.stores.sqlite import SqliteStore
from flamingock_provider.triggers.lock import FlamingockLockTrigger
from tests.e2e.harness import AirflowClient, AirflowServer
from tests.e2e.pipelines import counted
from tests.e2e.test_runs import deploy, latest_states


def make_trigger(timeout: float = 30, owner: str = "flamingock_p/manual__1") -> FlamingockLockTrigger:
    lock = LockConfig(poke_interval_seconds=0.05, mode=LockMode.DEFERRABLE)
    return FlamingockLockTrigger.for_pipeline(
        AuditConfig(), lock, key="p", owner=owner, started_at=time.time(), timeout=timeout
    )


async def first_event(trigger: FlamingockLockTrigger, within: float) -> TriggerEvent | None:
    events: AsyncGenerator[TriggerEvent, None] = trigger.run()  # type: ignore[assignment]
    try:
        return await asyncio.wait_for(events.__anext__(), within)
    except asyncio.TimeoutError:
        return None
    finally:
        await events.aclose()


def test_trigger_serialize_round_trips() -> None:
    trigger = make_trigger()
    classpath, kwargs = trigger.serialize()
    assert classpath == "flamingock_provider.triggers.lock.FlamingockLockTrigger"
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["audit"] == {
        "conn_id": None,
        "database": None,
        "schema": None,
        "table": "flamingock_audit_log",
        "lock_table": "flamingock_lock",
    }


def test_trigger_fires_once_the_lease_is_free() -> None:
    store = SqliteStore(embedded_store_path())
    held = store.acquire("p", "cli/other/1/x", 60)
    assert held is not None
    try:
        assert asyncio.run(first_event(make_trigger(), within=0.5)) is None  # still waiting
        store.release("p", "cli/other/1/x", held.token)
        event = asyncio.run(first_event(make_trigger(), within=5))
        assert event is not None and event.payload["status"] == "free"
        assert store.acquire("p", "flamingock_p/manual__1", 60) is not None  # the waiter can take it
    finally:
        store.close()


def test_trigger_times_out_naming_the_holder() -> None:
    store = SqliteStore(embedded_store_path())
    assert store.acquire("p", "cli/other/2/y", 60) is not None
    try:
        event = asyncio.run(first_event(make_trigger(timeout=0.2), within=5))
    finally:
        store.close()
    assert event is not None and event.payload["status"] == "timeout"
    assert event.payload["holder"]["owner"] == "cli/other/2/y"


def test_trigger_treats_its_own_run_as_free() -> None:
    store = SqliteStore(embedded_store_path())
    assert store.acquire("p", "flamingock_p/manual__1", 60) is not None  # e.g. a retried lock task
    store.close()
    event = asyncio.run(first_event(make_trigger(), within=5))
    assert event is not None and event.payload["status"] == "free"


def test_deferrable_lock_waits_in_the_triggerer_until_the_cli_releases(
    airflow_server: AirflowServer, airflow: AirflowClient
) -> None:
    dag_id, folder = deploy(airflow_server, airflow, "e2e_deferred", counted("e2e_deferred", 2, mode="deferrable"))
    with commands.workspace(folder) as ws:
        lease = ws.lease()  # a CLI process's lease: cli/<host>/<pid>/<random>
        lease.acquire()
        try:
            run_id = airflow.trigger(dag_id, {"action": "apply", "undo_to": None})
            airflow.wait_for_task_state(dag_id, run_id, "lock", {"deferred"}, timeout=90)
            ti = {t["task_id"]: t for t in airflow.task_instances(dag_id, run_id)}
            assert ti["plan"]["state"] is None  # nothing after the lock started
            time.sleep(3)  # several trigger pokes: still waiting while the CLI holds the lease
            assert airflow.task_states(dag_id, run_id)["lock"] == "deferred"
            assert ws.leases.current(ws.pipeline.id).owner == lease.owner  # type: ignore[union-attr]
        finally:
            lease.release()
    assert airflow.wait_for_run(dag_id, run_id, timeout=120) == "success", airflow.task_states(dag_id, run_id)
    assert latest_states(folder) == {"create-log": "APPLIED", "row-2": "APPLIED"}
    assert commands.status(folder)["lock"] is None  # the release task freed it
