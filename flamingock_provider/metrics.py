"""Airflow metrics of Flamingock runs, sent through Airflow's Stats (StatsD, Datadog or OpenTelemetry).

- ``flamingock.unit.applied``, ``.failed``, ``.rolled_back``, ``.rollback_failed``: counters, one per
  APPLIED, FAILED, ROLLED_BACK (compensation or undo) and ROLLBACK_FAILED audit entry;
- ``flamingock.unit.duration``: a timer (ms) from each entry that carries ``execution_ms``;
- ``flamingock.lock.wait``: a timer (ms) from the lock task's first poke to taking the lease.

Like Airflow's own metrics each one is sent twice: with tags (``pipeline``, and ``state`` on the
duration) for Datadog, OpenTelemetry and tag-aware StatsD, and with the pipeline as a name suffix
(``flamingock.unit.applied.inventory``) for plain StatsD. Airflow adds its ``statsd_prefix``.

The unit metrics are an audit sink (:class:`StatsSink`): importing this module (the operators do,
and so does ``airflow flamingock``) registers it with :func:`~flamingock_provider.core.sinks.register_automatic`,
and it switches itself on only where Airflow's metrics are on (``[metrics] statsd_on``,
``statsd_datadog_enabled`` or ``otel_on``). Metrics never fail a change: errors are logged.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from flamingock_provider.core.model import AuditEntry, State
from flamingock_provider.core.sinks import register_automatic

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger("flamingock.metrics")

UNIT_COUNTERS = {
    State.APPLIED: "flamingock.unit.applied",
    State.FAILED: "flamingock.unit.failed",
    State.ROLLED_BACK: "flamingock.unit.rolled_back",
    State.ROLLBACK_FAILED: "flamingock.unit.rollback_failed",
}
UNIT_DURATION = "flamingock.unit.duration"
LOCK_WAIT = "flamingock.lock.wait"
_SWITCHES = ("statsd_on", "statsd_datadog_enabled", "otel_on")


def _conf() -> Any:
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # an older Airflow 3
        from airflow.configuration import conf
    return conf


def metrics_enabled() -> bool:
    """Tell whether Airflow is importable and sends metrics (StatsD, Datadog or OpenTelemetry)."""
    try:
        conf = _conf()
    except ImportError:
        return False
    return any(conf.getboolean("metrics", switch, fallback=False) for switch in _SWITCHES)


def airflow_stats() -> Any:
    """Return Airflow's Stats, set up from ``[metrics]`` when this process has not done it yet.

    A task process has it set up by the task runner; the CLI and ``dag.test()`` may not.
    """
    try:
        from airflow.sdk.observability import stats
    except ImportError:  # an older Airflow 3
        from airflow.stats import Stats

        return Stats
    _initialize_once()
    return stats


def _initialize_once() -> None:
    try:
        from airflow.sdk._shared.observability.metrics import stats as backend
        from airflow.sdk.observability.metrics import stats_utils
    except ImportError:  # laid out otherwise: leave Stats as Airflow set it up
        return

    if getattr(backend, "_factory", None) is None:
        backend.initialize(
            factory=stats_utils.get_stats_factory(),
            export_legacy_names=_conf().getboolean("metrics", "legacy_names_on", fallback=True),
        )


def _send(stats: Any, kind: str, name: str, value: Any, pipeline: str, tags: dict[str, str]) -> None:
    """Send one metric tagged, and again with the pipeline as a name suffix (for plain StatsD)."""
    getattr(stats, kind)(name, value, tags={"pipeline": pipeline, **tags})
    getattr(stats, kind)(f"{name}.{pipeline}", value)


class StatsSink:
    """Count applied, failed and rolled-back units and time them, from each audit entry."""

    def __init__(self, stats: Any | None = None) -> None:
        self.stats = stats if stats is not None else airflow_stats()

    def __call__(self, entry: AuditEntry) -> None:
        counter = UNIT_COUNTERS.get(entry.state)
        if counter is not None:
            _send(self.stats, "incr", counter, 1, entry.pipeline, {})
        if entry.execution_ms is not None:
            waited = timedelta(milliseconds=entry.execution_ms)
            _send(self.stats, "timing", UNIT_DURATION, waited, entry.pipeline, {"state": entry.state.value})

    def __repr__(self) -> str:
        return "StatsSink(airflow)"


def automatic_sink() -> StatsSink | None:
    """Return the metrics sink where Airflow's metrics are on, else None."""
    return StatsSink() if metrics_enabled() else None


register_automatic("airflow_metrics", automatic_sink)


# -- the lock -----------------------------------------------------------------------------------


def first_poke_at(context: Context) -> datetime | None:
    """Return when the lock task first poked: its first reschedule's start, else this try's start."""
    ti = context["ti"]
    try:
        first = ti.get_first_reschedule_date(context)
    except Exception:  # no supervisor to ask (e.g. outside a task runner)
        first = None
    return first or getattr(ti, "start_date", None)


def record_lock_wait(pipeline: str, since: datetime | None, now: datetime | None = None) -> None:
    """Send ``flamingock.lock.wait``: the time from ``since`` (first poke) to ``now`` (acquisition)."""
    if since is None or not metrics_enabled():
        return
    try:
        waited = max((now or datetime.now(timezone.utc)) - since, timedelta(0))
        _send(airflow_stats(), "timing", LOCK_WAIT, waited, pipeline, {})
    except Exception:
        log.warning("could not send %s for %s", LOCK_WAIT, pipeline, exc_info=True)


def lease_acquired(context: Context, pipeline: str, since: datetime | float | None = None) -> None:
    """Record the lock wait of the lock task that has just taken ``pipeline``'s lease; never raises.

    ``since`` is when the task first poked (a datetime or epoch seconds, e.g. the ``started_at`` a
    deferrable wait carries through its trigger); default: :func:`first_poke_at`.
    """
    try:
        if isinstance(since, (int, float)):
            since = datetime.fromtimestamp(since, timezone.utc)
        record_lock_wait(pipeline, since or first_poke_at(context))
    except Exception:
        log.warning("could not record the lock wait of %s", pipeline, exc_info=True)
