"""The approve task: Airflow's human-in-the-loop approval, asked only when the run needs it (SPEC §10, §14).

It runs after the plan task, while the run holds the lease, and reads the audit state to decide
whether to ASK: when this run would apply (or, in an undo run, roll back) a unit that
``approval.required`` names, it shows the plan (markdown) and waits for Approve or Reject (no worker
slot while waiting on Airflow 3.3); otherwise it succeeds at once without asking. Its decision is
only a hint: every unit task checks again under the lease (:meth:`Engine.require_approval`), with
the answer it reads from this task's XCom (:func:`operators._common.run_info`).

Approve → returns ``{"asked": true, "approved_by", "approval_note"}``. Reject → the task fails
(``fail_on_reject``); no answer within ``timeout_hours`` → Airflow fails it; the unit and undo tasks
after it never run, and the release teardown still frees the lease.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

from flamingock_provider.core.approval import Gated
from flamingock_provider.core.preview import rollbacks
from flamingock_provider.operators._common import FlamingockTaskMixin, airflow_errors, run_info, run_request
from flamingock_provider.operators.approval_body import approval_body, approval_subject
from flamingock_provider.targets import open_target
from flamingock_provider.targets.risk import plan_details

if TYPE_CHECKING:
    from airflow.sdk import Context

    from flamingock_provider.core.workspace import Workspace

NOTE_PARAM = "note"


class FlamingockApproveOperator(FlamingockTaskMixin, ApprovalOperator):
    """Ask a person to approve the run when it would apply or undo a unit that needs approval.

    :param pipeline_dir: the pipeline folder, absolute or relative to the DAG file's folder.
    :param timeout_hours: how long to wait for an answer (fractions allowed); then the task fails.
    """

    template_fields = ("member",)  # subject and body are built at run time from the plan; never Jinja (SQL has braces)
    ui_color = "#fce8e6"

    def __init__(
        self, *, pipeline_dir: str | os.PathLike[str], timeout_hours: float, member: Any = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(
            subject="Approve this Flamingock run",
            response_timeout=timedelta(hours=timeout_hours),
            fail_on_reject=True,
            params={
                NOTE_PARAM: Param(
                    "",
                    type="string",
                    title="Note",
                    description="why you approve (a ticket, a review): recorded in every audit entry of the run",
                )
            },
            **kwargs,
        )
        self._init_pipeline(pipeline_dir, member)

    def execute(self, context: Context) -> Any:
        request = run_request(context)
        if request.action == "plan":
            self.log.info("action is 'plan': nothing is applied, nothing to approve")
            return {"asked": False}
        with airflow_errors(), self.workspace(context) as ws:
            gated, body = self._plan(context, ws, request.action, request.undo_to)
        if not gated:
            self.log.info("nothing this run would %s needs approval: going on without asking", request.action)
            return {"asked": False}
        self.subject = approval_subject(ws.pipeline.id, request.action, gated)
        self.body = body
        self.log.info("%s; waiting up to %s for an answer", self.subject, self.response_timeout)
        return super().execute(context)  # writes the request and parks the task until someone answers

    def _plan(self, context: Context, ws: Workspace, action: str, undo_to: str | None) -> tuple[list[Gated], str]:
        renderer = self.renderer(context)
        engine = ws.engine(run=run_info(context), renderer=renderer)
        snapshot = engine.snapshot()
        decisions = {d.unit.id: d for d in engine.plan(snapshot)}
        if action == "undo":
            units = engine.undo_targets(to=undo_to, snapshot=snapshot)
        else:
            units = engine.pending(ws.pipeline.units, decisions)
        gated = engine.gated(units)
        if not gated:
            return [], ""
        chosen = [decisions[u.id] for u in units]
        details = plan_details(ws.pipeline, chosen, targets=open_target, renderer=renderer, sql=action != "undo")
        if action == "undo":
            for u in units:
                details[u.id]["rendered"] = rollbacks(ws.pipeline, u, renderer, decisions[u.id].latest)
        return gated, approval_body(ws.pipeline.id, ws.pipeline.approval, action, units, gated, details)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        answer = super().execute_complete(context=context, event=event)  # raises on Reject and on timeout
        user = answer.get("responded_by_user") or {}
        by = str(user.get("name") or user.get("id") or "unknown")
        note = str((answer.get("params_input") or {}).get(NOTE_PARAM) or "").strip() or "approved in Airflow"
        self.log.info("approved by %s: %s", by, note)
        return {"asked": True, "approved_by": by, "approval_note": note}
