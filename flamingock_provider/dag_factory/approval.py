"""The ``approve`` task of a pipeline whose ``approval.required`` is not ``never`` (SPEC §10, §14).

Built on Airflow's human-in-the-loop ``ApprovalOperator`` (Airflow 3.1+): a missing operator is a
parse-time error of the pipeline naming the Airflow version it needs. The tasks that write audit
entries after it (unit, rollback and undo tasks) learn its task id, to read its answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk import BaseOperator

from flamingock_provider.core.model import ApprovalRequired, Pipeline
from flamingock_provider.exceptions import PipelineValidationError, ValidationIssue

HITL_AIRFLOW = "3.1"
Link = Callable[[Sequence[BaseOperator], BaseOperator], None]


def approve_operator_class(pipeline: Pipeline) -> type[Any]:
    """The approve task's operator; a PipelineValidationError when this Airflow has no HITL operator."""
    try:
        from flamingock_provider.operators.approve import FlamingockApproveOperator
    except Exception as err:  # ImportError, or the provider's "needs Airflow 3.1+" feature exception
        raise PipelineValidationError(
            str(pipeline.path),
            [
                ValidationIssue(
                    "pipeline.yaml",
                    f"field 'approval.required': {pipeline.approval.required.value!r} needs Airflow's "
                    f"human-in-the-loop approval (Airflow {HITL_AIRFLOW}+ with apache-airflow-providers-standard); "
                    f"pipeline {pipeline.id!r} cannot build its approve task here ({type(err).__name__}: {err}). "
                    f"Upgrade Airflow, or set approval.required: never",
                )
            ],
        ) from err
    return FlamingockApproveOperator


def approve_task(
    pipeline: Pipeline, pipeline_dir: str, after: BaseOperator, link: Link, member: Any = None
) -> BaseOperator | None:
    """Create the approve task after ``after`` (the plan task); None when the pipeline never asks."""
    if pipeline.approval.required is ApprovalRequired.NEVER:
        return None
    operator = approve_operator_class(pipeline)
    approve: BaseOperator = operator(
        task_id="approve",
        pipeline_dir=pipeline_dir,
        timeout_hours=pipeline.approval.timeout_hours,
        member=member,
        doc_md=(
            f"Asks for approval (`approval.required: {pipeline.approval.required.value}`) when this run would "
            f"apply or undo a change that needs it; passes straight through otherwise. Waits up to "
            f"{pipeline.approval.timeout_hours:g} h."
        ),
    )
    link([after], approve)
    return approve


def read_approval_from(approve: BaseOperator, tasks: Sequence[BaseOperator]) -> None:
    """Tell the tasks that write audit entries where the run's approval is (they check it under the lease)."""
    for task in tasks:
        task.approve_task_id = approve.task_id
