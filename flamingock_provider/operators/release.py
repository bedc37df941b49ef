"""The release task: free the run's lease (the teardown of a pipeline's DAG)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from flamingock_provider.operators._common import FlamingockTaskMixin, airflow_errors, run_owner

if TYPE_CHECKING:
    from airflow.sdk import Context


class FlamingockReleaseOperator(FlamingockTaskMixin, BaseOperator):
    """Release the lease the lock task took for this run; a lease already gone is left alone.

    Use it as the teardown of the lock sensor: ``release.as_teardown(setups=lock)``.

    :param pipeline_dir: the pipeline folder, absolute or relative to the DAG file's folder.
    :param lock_task_id: the lock sensor whose lease token (XCom) this task releases.
    """

    template_fields: Sequence[str] = ("member",)  # a fleet member: the wave group's mapped argument
    ui_color = "#f1f3f4"

    def __init__(
        self, *, pipeline_dir: str | os.PathLike[str], lock_task_id: str, member: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._init_pipeline(pipeline_dir, member)
        self.lock_task_id = lock_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        token = self.lease_token(context, self.lock_task_id)
        if token is None:
            raise AirflowSkipException(
                f"no lease was taken by {self.lock_task_id} (action plan, or it never ran): nothing to release"
            )
        with airflow_errors(), self.workspace(context) as ws:
            lease = ws.lease(run_owner(context))
            lease.token = token
            released = lease.release()
        if not released:
            self.log.warning(
                "lease token %s is no longer held by this run (expired or taken over): nothing released", token
            )
        return {"released": released, "token": token}
