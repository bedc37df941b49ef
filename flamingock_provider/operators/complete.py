"""The last task of a pipeline run: it succeeds only when nothing failed; after an apply it emits the asset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator, get_parsing_context

from flamingock_provider.core.plan import action_rule
from flamingock_provider.operators._common import run_request

if TYPE_CHECKING:
    from airflow.sdk import Context


def pipeline_asset(pipeline_id: str) -> Asset:
    """Return the asset a successful apply of ``pipeline_id`` emits: ``flamingock://<pipeline>``."""
    return Asset(f"flamingock://{pipeline_id}")


def _parsed_for_another_task(task_id: str) -> bool:
    """True in a worker that re-parsed the DAG file to run some other task."""
    wanted = get_parsing_context().task_id
    return bool(wanted) and wanted != task_id


class FlamingockCompleteOperator(BaseOperator):
    """Finish a run that nothing failed in; an ``apply`` run emits ``flamingock://<pipeline>``.

    Its trigger rule ``none_failed`` makes it ``upstream_failed`` when any change or rollback task
    failed; as the run's last non-teardown task that fails the run even after a compensation that
    succeeded.

    :param pipeline_id: the pipeline whose asset the task emits.
    """

    template_fields: Sequence[str] = ("member",)  # in a fleet's wave group: names the map index
    ui_color = "#ceead6"

    def __init__(self, *, pipeline_id: str, member: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "none_failed")
        given = "outlets" in kwargs
        super().__init__(**kwargs)
        self.pipeline_id = pipeline_id
        self.member = member
        # Building an Asset with a URI makes Airflow import every provider's asset handlers (about
        # 0.3 s): a worker that re-parsed the DAG file for another task does not need the outlet.
        if not given and not _parsed_for_another_task(self.task_id):
            self.outlets = [pipeline_asset(pipeline_id)]

    def execute(self, context: Context) -> dict[str, Any]:
        action = run_request(context).action
        if not action_rule(action).emits_asset:
            self.outlets = []  # Airflow records an event for each outlet of a task that succeeds
            self.log.info("action %r finished without a failure; no asset event (nothing was applied)", action)
            return {"pipeline": self.pipeline_id, "action": action, "asset": None}
        return {"pipeline": self.pipeline_id, "action": action, "asset": f"flamingock://{self.pipeline_id}"}
