"""What every Flamingock task shares: the run's action, its identity, the pipeline folder, Jinja.

One DAG run is one execution: every task of the run derives the same ``execution_id`` from
``dag_id`` and ``run_id``, and the lease owner is ``<dag_id>/<run_id>``. The pipeline folder is
kept relative to the DAG file's folder and resolved at run time against the DAG bundle the worker
holds, so a worker with the bundle somewhere else still finds it.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from flamingock_provider.core.audit import RunInfo
from flamingock_provider.core.fleet import member_pipeline, parse_members
from flamingock_provider.core.lease import Lease
from flamingock_provider.core.model import Member, Pipeline
from flamingock_provider.core.plan import ACTION_RULES
from flamingock_provider.exceptions import (
    ApprovalRequiredError,
    BlockedError,
    ConfigurationError,
    LeaseError,
    LeaseLostError,
    PipelineValidationError,
    UsageError,
)
from flamingock_provider.hooks.flamingock import FlamingockHook
from flamingock_provider.metrics import lease_acquired as lease_acquired  # registers the Airflow metrics sink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from flamingock_provider.core.context import StringRenderer
    from flamingock_provider.core.workspace import Workspace

REHEARSE = "rehearse"  # an action only where pipeline.yaml has rehearsal.scratch (SPEC §14)
ACTIONS = tuple(a for a in ACTION_RULES if a != REHEARSE)  # apply, plan, undo
# Errors a retry cannot fix: the task fails at once, with the message that says what to do.
FATAL_ERRORS = (
    *(UsageError, BlockedError, LeaseError, PipelineValidationError, ConfigurationError),
    ApprovalRequiredError,
)
_EXECUTION_NAMESPACE = uuid.UUID("6f1c3a52-4a8e-4d0e-9a43-7d2b1f0c9e11")


@dataclass(frozen=True)
class RunRequest:
    """What the DAG run's trigger form asked for."""

    action: str = "apply"
    undo_to: str | None = None


def run_request(context: Context) -> RunRequest:
    """Read ``action`` and ``undo_to`` from the run's params; fail at once when they don't fit."""
    params = context.get("params") or {}
    action = params.get("action") or "apply"
    undo_to = params.get("undo_to") or None
    if action not in (*ACTIONS, REHEARSE):
        raise AirflowFailException(f"param 'action' is {action!r}; use one of: {', '.join(ACTIONS)}")
    if action == "undo" and undo_to is None:
        raise AirflowFailException(
            "action 'undo' needs param 'undo_to': set it to the change id to roll back to (the changes "
            "applied after it are undone, newest first); nothing was changed"
        )
    return RunRequest(action, str(undo_to) if undo_to is not None else None)


def member_json(member: Member) -> dict[str, Any]:
    """A fleet member as a wave's task group maps it (its name and the connections of its targets)."""
    return {
        "name": member.name,
        "targets": {name: {"conn_id": t.conn_id, "database": t.database} for name, t in member.targets.items()},
    }


def member_from_json(pipeline: Pipeline, data: Mapping[str, Any]) -> Member:
    """Rebuild a member handed on by the fleet's members task, checked against the pipeline's targets again."""

    problems: list[str] = []
    members = parse_members([dict(data)], pipeline.targets, problems)
    if problems or not members:
        raise ConfigurationError(f"member {data.get('name')!r} handed on by the members task: {'; '.join(problems)}")
    return members[0]


def execution_id(dag_id: str, run_id: str) -> str:
    """Return the execution id every task of one DAG run shares."""
    return uuid.uuid5(_EXECUTION_NAMESPACE, f"{dag_id}/{run_id}").hex


def run_owner(context: Context) -> str:
    """Return the lease owner of this DAG run: ``<dag_id>/<run_id>``."""
    ti = context["ti"]
    return f"{ti.dag_id}/{ti.run_id}"


def run_info(context: Context) -> RunInfo:
    """Return the audit identity of this task try."""
    ti = context["ti"]
    return RunInfo(
        execution_id=execution_id(ti.dag_id, ti.run_id),
        owner=run_owner(context),
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        try_number=ti.try_number,
        triggered_by=_triggered_by(context),
        hostname=socket.gethostname(),
        params=dict(context.get("params") or {}),
        **_approval(context),
        bundle_version=bundle_version(context),
    )


def bundle_version(context: Context) -> str | None:
    """The version of the DAG bundle this task runs from (a GitDagBundle's commit); None when unversioned."""
    version = getattr(getattr(context.get("ti"), "bundle_instance", None), "version", None)
    return str(version) if version else None


def _approval(context: Context) -> dict[str, str | None]:
    """Who approved this run and why, from the approve task's answer (SPEC §14); nothing when not asked."""
    approve_task_id = getattr(context.get("task"), "approve_task_id", None)
    if not approve_task_id:
        return {}
    answer = pull(context, approve_task_id)
    if not isinstance(answer, dict) or not answer.get("approved_by"):
        return {}
    return {"approved_by": str(answer["approved_by"]), "approval_note": str(answer.get("approval_note") or "")}


def pull(context: Context, task_id: str, key: str = "return_value") -> Any:
    """An XCom of an earlier task of this run: in a fleet's wave group, the one of this task's member.

    A task mapped in a task group pulls every map index of a task in the same group unless told which.
    """
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    if map_index is not None and map_index >= 0:
        return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=map_index)
    return ti.xcom_pull(task_ids=task_id, key=key)


def _triggered_by(context: Context) -> str:
    dag_run = context.get("dag_run")
    run_type = getattr(getattr(dag_run, "run_type", None), "value", None) or "airflow"
    user = getattr(dag_run, "triggering_user_name", None)
    return f"airflow:{run_type}:{user}" if user else f"airflow:{run_type}"


@contextmanager
def airflow_errors() -> Iterator[None]:
    """Fail the task without retries on errors a retry cannot fix."""
    try:
        yield
    except FATAL_ERRORS as err:
        raise AirflowFailException(str(err)) from err


def caller_file() -> Path | None:
    """Return the file of the first caller outside this package and Airflow (the DAG file)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(("flamingock_provider", "airflow")):
            file = frame.f_globals.get("__file__")
            if file:
                return Path(file).resolve()
        frame = frame.f_back  # type: ignore[assignment]
    return None


def caller_folder() -> Path:
    """Return the folder of the DAG file calling into this package (the current folder if none)."""
    file = caller_file()
    return file.parent if file is not None else Path.cwd()


def runtime_dag_folder(context: Context) -> Path | None:
    """Return the folder of the running DAG's file inside the bundle this worker holds."""
    dag = context.get("dag")
    if dag is None:
        return None
    bundle = getattr(context.get("ti"), "bundle_instance", None)
    relative = getattr(dag, "relative_fileloc", None)
    if bundle is not None and relative:
        return (Path(str(bundle.path)) / str(relative)).parent
    fileloc: str | None = getattr(dag, "fileloc", None)
    return Path(fileloc).parent if fileloc else None


@lru_cache(maxsize=64)
def _parent_folder(file: str) -> Path:
    return Path(file).resolve().parent


@lru_cache(maxsize=256)
def _pipeline_paths(pipeline_dir: str, folder: Path) -> tuple[str, str]:
    """Return the absolute pipeline folder and its path relative to the DAG file's folder."""
    path = Path(pipeline_dir)
    absolute = os.path.abspath(path if path.is_absolute() else folder / path)
    try:
        return absolute, Path(os.path.relpath(absolute, folder)).as_posix()
    except ValueError:  # another drive
        return absolute, absolute


class FlamingockTaskMixin:
    """Pipeline folder, hook, audit identity and renderer for a Flamingock operator or sensor.

    In a fleet's wave group (SPEC §13) a task also has a ``member``: the task group's mapped
    argument at parse time, one member's JSON (:func:`member_json`) once Airflow has rendered the
    task for its map index. :meth:`workspace` then scopes everything to that member: its targets, its
    audit trail and its lease ``<pipeline>@<member>``.
    """

    pipeline_dir: str  # absolute, as seen where the DAG was parsed
    pipeline_ref: str  # relative to the DAG file's folder (POSIX), or absolute when outside it
    approve_task_id: str | None = None  # the run's approve task, whose answer the audit entries carry
    member: Any = None  # a fleet member (see the class doc); None outside a fleet

    def _init_pipeline(self, pipeline_dir: str | os.PathLike[str], member: Any = None) -> None:
        self.member = member
        folder = self._dag_folder() or caller_folder()
        self.pipeline_dir, self.pipeline_ref = _pipeline_paths(os.fspath(pipeline_dir), folder)

    def _dag_folder(self) -> Path | None:
        has_dag = getattr(self, "has_dag", None)
        if has_dag is None or not has_dag():
            return None
        fileloc = getattr(self.dag, "fileloc", None)  # type: ignore[attr-defined]
        return _parent_folder(fileloc) if fileloc else None

    def resolve_pipeline_dir(self, context: Context) -> Path:
        """Return the pipeline folder inside the current bundle; the parse-time path as a fallback."""
        folder = runtime_dag_folder(context)
        if folder is not None and not os.path.isabs(self.pipeline_ref):
            candidate = folder / self.pipeline_ref
            if candidate.is_dir():
                return candidate
        return Path(self.pipeline_dir)

    def hook(self, context: Context) -> FlamingockHook:
        return FlamingockHook(self.resolve_pipeline_dir(context))

    @contextmanager
    def workspace(self, context: Context) -> Iterator[Workspace]:
        """Open this task's workspace: the pipeline's, or its fleet member's (see the class doc)."""
        with self.hook(context).workspace() as ws:
            member = self.fleet_member(context, ws.pipeline)
            yield ws if member is None else ws.for_member(member)

    def scoped_pipeline(self, context: Context) -> Pipeline:
        """This task's pipeline as its member sees it (the pipeline itself outside a fleet)."""
        pipeline = self.hook(context).pipeline
        member = self.fleet_member(context, pipeline)
        return pipeline if member is None else member_pipeline(pipeline, member)

    def fleet_member(self, context: Context, pipeline: Pipeline) -> Member | None:
        """The member this task runs for, checked against the pipeline's targets; None outside a fleet."""
        data = self.member
        if data is None:
            return None
        if not isinstance(data, Mapping) and hasattr(data, "resolve"):
            try:  # unrendered: a failure callback run outside the worker
                data = data.resolve(context)
            except Exception as err:  # the wave's list (an XCom) is out of reach here
                raise ConfigurationError(
                    f"task {getattr(self, 'task_id', '?')}: its fleet member could not be resolved outside the "
                    f"worker ({type(err).__name__}: {err}); run `flamingock status PIPELINE_DIR --member NAME`"
                ) from err
        return member_from_json(pipeline, data)

    def renderer(self, context: Context) -> StringRenderer:
        """Render payload strings and ``when:`` with Airflow's sandboxed Jinja and the task context."""
        env = self.get_template_env()  # type: ignore[attr-defined]

        def render(text: str) -> Any:
            return self.render_template(text, context, env)  # type: ignore[attr-defined]

        return render

    def lease_token(self, context: Context, lock_task_id: str) -> int | None:
        token = pull(context, lock_task_id)
        return int(token) if token is not None else None

    def adopt_lease(self, context: Context, ws: Workspace, lock_task_id: str, handed: int | None = None) -> Lease:
        """Continue the run's lease taken by the lock task: re-check owner and token, and extend it.

        ``handed``: the token as the plan task passed it on (saves this task an XCom round trip); the
        store checks it like any token, and when the lock task has run again since, the lock task's
        own token is read instead.
        """
        if handed is not None:
            lease = ws.lease(run_owner(context))
            try:
                lease.adopt(handed)
                return lease
            except LeaseLostError:
                pass  # the lock task ran again (a cleared run): its XCom has the current token
        token = self.lease_token(context, lock_task_id)
        if token is None:
            raise AirflowFailException(
                f"task {lock_task_id!r} handed on no lease token; it must run (and take the lease) before "
                f"this task. Clear the run from {lock_task_id!r}"
            )
        lease = ws.lease(run_owner(context))
        lease.adopt(token)
        return lease

    @contextmanager
    def run_lease(
        self, context: Context, ws: Workspace, lock_task_id: str | None, handed: int | None = None
    ) -> Iterator[Lease]:
        """Adopt the lock task's lease; without a lock task, take the lease for this task only."""
        if lock_task_id is not None:
            yield self.adopt_lease(context, ws, lock_task_id, handed)
            return
        lease = ws.lease(run_owner(context))
        lease.acquire()
        try:
            yield lease
        finally:
            lease.release()
