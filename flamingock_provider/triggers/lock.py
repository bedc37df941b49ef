"""The lease trigger: wait in the triggerer until a pipeline's lease is free, holding no worker slot.

The trigger only *watches* (one read of the lease per poke, run in a thread); the sensor takes the
lease when it resumes in a worker, with the same single atomic conditional write as every other
runner, so two runs woken together never both get it. The trigger needs no pipeline folder (the
triggerer has no DAG bundle): the sensor hands it the lease key and where the lease lives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from flamingock_provider.core.model import AuditConfig, LeaseInfo, LockConfig

FREE = "free"
TIMEOUT = "timeout"


class FlamingockLockTrigger(BaseTrigger):
    """Fire ``{"status": "free"}`` once the lease of ``key`` is free, expired or ``owner``'s own.

    After ``deadline`` (epoch seconds) it fires ``{"status": "timeout", "holder": {...}}`` instead.

    :param key: the lease key (the pipeline id).
    :param owner: the run waiting for it (``<dag_id>/<run_id>``).
    :param audit: the pipeline's ``audit:`` settings (where the lease lives by default).
    :param lock_conn_id: ``lock.conn_id`` when the lease lives in Redis.
    :param poke_interval: seconds between reads.
    :param started_at: when the sensor started waiting (epoch seconds), handed back in the event.
    :param deadline: when to give up (epoch seconds).
    """

    def __init__(
        self,
        *,
        key: str,
        owner: str,
        audit: Mapping[str, Any],
        lock_conn_id: str | None,
        poke_interval: float,
        started_at: float,
        deadline: float,
    ) -> None:
        super().__init__()
        self.key = key
        self.owner = owner
        self.audit = dict(audit)
        self.lock_conn_id = lock_conn_id
        self.poke_interval = float(poke_interval)
        self.started_at = float(started_at)
        self.deadline = float(deadline)

    @classmethod
    def for_pipeline(
        cls, audit: AuditConfig, lock: LockConfig, *, key: str, owner: str, started_at: float, timeout: float
    ) -> FlamingockLockTrigger:
        """Build the trigger from a loaded pipeline's ``audit:`` and ``lock:`` settings."""
        return cls(
            key=key,
            owner=owner,
            audit=asdict(audit),
            lock_conn_id=lock.conn_id,
            poke_interval=lock.poke_interval_seconds,
            started_at=started_at,
            deadline=started_at + timeout,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "key": self.key,
                "owner": self.owner,
                "audit": self.audit,
                "lock_conn_id": self.lock_conn_id,
                "poke_interval": self.poke_interval,
                "started_at": self.started_at,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            holder = await asyncio.to_thread(self.current_holder)
            if holder is None or holder.owner == self.owner:
                yield TriggerEvent({"status": FREE, "started_at": self.started_at})
                return
            remaining = self.deadline - time.time()
            if remaining <= 0:
                yield TriggerEvent({"status": TIMEOUT, "started_at": self.started_at, "holder": holder.to_dict()})
                return
            self.log.info("lease of %s held by %s until %s; waiting", self.key, holder.owner, holder.expires_at)
            await asyncio.sleep(max(0.05, min(self.poke_interval, remaining)))

    def current_holder(self) -> LeaseInfo | None:
        """Read the live holder of the lease (blocking: the trigger runs it in a thread)."""
        from flamingock_provider.core.workspace import open_lease_backend, open_store

        store = open_store(AuditConfig(**self.audit))
        try:
            return open_lease_backend(LockConfig(conn_id=self.lock_conn_id), store).current(self.key)
        finally:
            store.close()
