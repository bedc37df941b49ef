"""Runs of Flamingock DAGs that wait for a person's approval: pending human-in-the-loop requests.

Read from Airflow's metadata database (the view runs inside the api-server). Each one links to the
task's required-actions page, where Airflow's UI asks Approve or Reject.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

log = logging.getLogger("flamingock.view")
MAX_SHOWN = 20  # per DAG


@dataclass(frozen=True)
class AwaitingApproval:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    subject: str
    since: str  # when the request was written (UTC)

    @property
    def link(self) -> str:
        """The task's required-actions page, relative to the view."""
        return (
            f"../dags/{quote(self.dag_id, safe='')}/runs/{quote(self.run_id, safe='')}/tasks/"
            f"{quote(self.task_id, safe='')}/required_actions"
            + (f"?map_index={self.map_index}" if self.map_index >= 0 else "")
        )

    def to_json(self) -> dict[str, object]:
        return {**self.__dict__, "link": self.link}


def awaiting_approval(dag_ids: Iterable[str]) -> dict[str, list[AwaitingApproval]]:
    """Pending (unanswered) approval requests per DAG id, oldest first; {} when they cannot be read."""
    wanted = sorted(set(dag_ids))
    if not wanted:
        return {}
    try:
        return _query(wanted)
    except Exception:  # the page must still show the pipelines
        log.warning("pending approvals not shown", exc_info=True)
        return {}


def _query(dag_ids: list[str]) -> dict[str, list[AwaitingApproval]]:
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    waiting = [TaskInstanceState.DEFERRED, *([s] if (s := getattr(TaskInstanceState, "AWAITING_INPUT", None)) else [])]
    query = (
        select(
            TaskInstance.dag_id,
            TaskInstance.run_id,
            TaskInstance.task_id,
            TaskInstance.map_index,
            HITLDetail.subject,
            HITLDetail.created_at,
        )
        .join(TaskInstance, HITLDetail.ti_id == TaskInstance.id)
        .where(TaskInstance.dag_id.in_(dag_ids), HITLDetail.responded_at.is_(None), TaskInstance.state.in_(waiting))
        .order_by(HITLDetail.created_at)
    )
    out: dict[str, list[AwaitingApproval]] = {}
    with create_session() as session:
        for dag_id, run_id, task_id, map_index, subject, created_at in session.execute(query):
            rows = out.setdefault(dag_id, [])
            if len(rows) < MAX_SHOWN:
                since = created_at.strftime("%Y-%m-%d %H:%M:%S") if created_at else ""
                rows.append(AwaitingApproval(dag_id, run_id, task_id, int(map_index), str(subject), since))
    return out
