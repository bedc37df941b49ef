"""The rehearse task: rehearse the pending changes on the scratch targets of ``rehearsal.scratch``.

Runs only when the run's ``action`` is ``rehearse`` (the plan task skips it otherwise). The lock task
takes no lease in such a run: the rehearsal touches only scratch targets, with a throwaway audit store
whose own lease fences its writes (:mod:`core.rehearsing`). A report that is not ok fails the task,
with one log line per mismatch; the report is the task's XCom return value either way.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from flamingock_provider.core.rehearsing import rehearse_pipeline
from flamingock_provider.operators._common import (
    REHEARSE,
    FlamingockTaskMixin,
    airflow_errors,
    run_info,
    run_request,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


class FlamingockRehearseOperator(FlamingockTaskMixin, BaseOperator):
    """Apply, undo and apply again the pending changes on scratch targets; fail when a rollback does not restore.

    :param pipeline_dir: the pipeline folder, absolute or relative to the DAG file's folder.
    :param scratch: target name -> scratch connection id; default: pipeline.yaml's ``rehearsal.scratch``.
    """

    ui_color = "#f3e8fd"

    def __init__(
        self, *, pipeline_dir: str | os.PathLike[str], scratch: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("retries", 0)  # a second try would find the scratch targets already changed
        super().__init__(**kwargs)
        self._init_pipeline(pipeline_dir)
        self.scratch = dict(scratch or {})

    def execute(self, context: Context) -> dict[str, Any]:
        request = run_request(context)
        if request.action != REHEARSE:
            raise AirflowSkipException(f"action is {request.action!r}: no rehearsal")
        with airflow_errors():
            report = rehearse_pipeline(
                self.resolve_pipeline_dir(context), self.scratch, run=run_info(context), renderer=self.renderer(context)
            )
        doc = report.to_json()
        self.log.info("rehearsed %s; not rehearsed: %s", report.rehearsed or "nothing", report.not_rehearsed or "none")
        if report.ok:
            return doc
        for mismatch in report.mismatches:
            self.log.error("%s %s: %s", mismatch.id, mismatch.phase, mismatch.detail)
        context["ti"].xcom_push(key="return_value", value=doc)
        raise AirflowFailException(
            f"rehearsal of {report.pipeline!r} found {len(report.mismatches)} problem(s): "
            + "; ".join(f"{m.id} {m.phase}: {m.detail}" for m in report.mismatches)
        )
