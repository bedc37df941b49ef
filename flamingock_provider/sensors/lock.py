"""The lock sensor: take the pipeline's lease for this DAG run, waiting while another owner holds it.

Each poke is one conditional write (take the lease if free, expired or already this run's). The
fencing token goes to XCom (``PokeReturnValue``) for the unit tasks to adopt. In ``reschedule``
mode waiting holds no worker slot between pokes. In ``deferrable`` mode the sensor tries once, then
waits in the triggerer (:class:`~flamingock_provider.triggers.lock.FlamingockLockTrigger` watches
the lease) and takes the lease when it resumes in a worker: the atomic write stays in the worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout

from flamingock_provider.core.model import LockConfig, LockMode
from flamingock_provider.core.pipeline_cache import cached_pipeline
from flamingock_provider.core.plan import action_rule
from flamingock_provider.exceptions import LockTimeoutError
from flamingock_provider.metrics import lease_acquired
from flamingock_provider.operators._common import FlamingockTaskMixin, airflow_errors, run_owner, run_request
from flamingock_provider.triggers.lock import TIMEOUT, FlamingockLockTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


def sensor_mode(mode: LockMode | str) -> str:
    """Return the Airflow sensor mode for a ``lock.mode`` (deferrable waits in the triggerer, not in pokes)."""
    value = LockMode(mode)
    return LockMode.POKE.value if value is LockMode.POKE else LockMode.RESCHEDULE.value


class FlamingockLockSensor(FlamingockTaskMixin, BaseSensorOperator):
    """Take a pipeline's lease for this DAG run (owner ``<dag_id>/<run_id>``); hand the token on.

    With the run's ``action`` = ``plan`` it passes at once without taking the lease; with
    ``undo`` and no ``undo_to`` it fails at once. After ``wait_timeout_seconds`` it fails with a
    message naming the holder and its expiry.

    :param pipeline_dir: the pipeline folder, absolute or relative to the DAG file's folder.
    :param wait_timeout_seconds: how long to wait; default ``lock.wait_timeout_seconds``.
    :param poke_interval: seconds between tries; default ``lock.poke_interval_seconds``.
    :param mode: ``poke``, ``reschedule`` or ``deferrable``; default ``lock.mode``.
    """

    template_fields: Sequence[str] = ("member",)  # a fleet member: the wave group's mapped argument
    ui_color = "#fff4e5"

    def __init__(
        self,
        *,
        pipeline_dir: str | os.PathLike[str],
        wait_timeout_seconds: float | None = None,
        poke_interval: float | None = None,
        mode: str | None = None,
        member: Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(mode=sensor_mode(mode or LockMode.RESCHEDULE), **kwargs)
        self._init_pipeline(pipeline_dir, member)
        given = None not in (wait_timeout_seconds, poke_interval, mode)
        lock = LockConfig() if given else cached_pipeline(self.pipeline_dir).lock
        self.requested_mode = LockMode(mode or lock.mode).value
        self.mode = sensor_mode(self.requested_mode)
        self.timeout = float(wait_timeout_seconds if wait_timeout_seconds is not None else lock.wait_timeout_seconds)
        self.poke_interval = float(poke_interval if poke_interval is not None else lock.poke_interval_seconds)
        self._validate_input_values()

    def execute(self, context: Context) -> Any:
        action = run_request(context).action  # fails at once on an undo without undo_to
        if self.member is not None:  # a fleet member: one of its own connections missing fails it alone, first
            with airflow_errors(), self.workspace(context) as ws:
                ws.check_connections()
        if not action_rule(action).takes_lease:
            # Passes through (SPEC §10): Airflow requires a setup's next task to run all_success, so a
            # skipped lock would skip the plan task too. The release task ends skipped instead.
            self.log.info("action %r changes nothing: no lease taken", action)
            return None
        if self.requested_mode == LockMode.DEFERRABLE.value:
            return self._take_or_defer(context, started_at=time.time())
        try:
            return super().execute(context)
        except AirflowSensorTimeout as err:
            raise AirflowSensorTimeout(self._timeout_message(context)) from err

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: take the lease, or wait again if another run took it first."""
        if event.get("status") == TIMEOUT:
            raise AirflowSensorTimeout(_timeout_text(event.get("holder") or {}, float(self.timeout)))
        return self._take_or_defer(context, started_at=float(event["started_at"]))

    def _take_or_defer(self, context: Context, started_at: float) -> Any:
        self._waiting_since = started_at
        result = self.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        remaining = started_at + float(self.timeout) - time.time()
        if remaining <= 0:
            raise AirflowSensorTimeout(self._timeout_message(context))
        pipeline = self.scoped_pipeline(context)
        trigger = FlamingockLockTrigger.for_pipeline(
            pipeline.audit,
            pipeline.lock,
            key=pipeline.audit_key,
            owner=run_owner(context),
            started_at=started_at,
            timeout=float(self.timeout),
        )
        self.log.info("waiting for the lease of %s in the triggerer (no worker slot held)", pipeline.id)
        # The trigger gives up at the deadline itself, with the holder in its message; this is a backstop.
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=remaining + 60))

    def poke(self, context: Context) -> bool | PokeReturnValue:
        with airflow_errors(), self.workspace(context) as ws:
            lease = ws.lease(run_owner(context))
            info = lease.try_acquire()
            if info is not None:
                self.log.info(
                    "lease of %s taken by %s: token %s until %s",
                    info.key,
                    info.owner,
                    info.token,
                    info.expires_at.isoformat(),
                )
                lease_acquired(context, info.key, since=getattr(self, "_waiting_since", None))
                return PokeReturnValue(is_done=True, xcom_value=info.token)
            holder = ws.leases.current(ws.pipeline.audit_key)
        if holder is not None:
            self.log.info(
                "lease of %s held by %s until %s; waiting", holder.key, holder.owner, holder.expires_at.isoformat()
            )
        return False

    def _timeout_message(self, context: Context) -> str:
        with self.workspace(context) as ws:
            holder = ws.leases.current(ws.pipeline.audit_key)
            key = ws.pipeline.audit_key
        owner = holder.owner if holder else None
        return str(LockTimeoutError(key, owner, holder.expires_at if holder else None, float(self.timeout)))


def _timeout_text(holder: dict[str, Any], waited_s: float) -> str:
    """The timeout message from the holder the trigger saw last (a ``LeaseInfo.to_dict()``)."""
    expires_at = holder.get("expires_at")
    expiry = datetime.fromisoformat(expires_at) if expires_at else None
    return str(LockTimeoutError(str(holder.get("key", "?")), holder.get("owner"), expiry, waited_s))
