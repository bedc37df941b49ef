"""The Flamingock view: a FastAPI app mounted in Airflow's api-server under ``/flamingock``.

Every route needs Airflow's own authentication (the UI's session cookie or an API bearer token,
resolved by Airflow's auth manager): without one the answer is 401, with an invalid one 403.
A pipeline is shown only to users who may read its DAG. Reading the audit stores blocks, so the
routes are plain functions that FastAPI runs in its thread pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from flamingock_provider.plugins.approvals import awaiting_approval
from flamingock_provider.plugins.overview import (
    PipelineOverview,
    dags_folder,
    default_changes_root,
    overview,
    shown_path,
)
from flamingock_provider.plugins.render import render_login_needed, render_page

URL_PREFIX = "/flamingock"


async def airflow_user(request: Request) -> Any:
    """Return the signed-in Airflow user the way Airflow's own API does (bearer token, else session cookie).

    Imported here, not at module level: every Airflow process loads plugins, only the api-server serves them.
    """
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


User = Annotated[Any, Depends(airflow_user)]


def visible_pipelines(user: Any, changes_root: Path) -> list[PipelineOverview]:
    """The pipelines under ``changes_root`` whose DAG ``user`` may read."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    manager = get_auth_manager()
    if not changes_root.is_dir():
        return []
    return [
        p
        for p in overview(changes_root, dags_folder())
        if manager.is_authorized_dag(method="GET", user=user, details=DagDetails(id=p.dag_id))
    ]


def create_app(changes_root: Path | None = None) -> FastAPI:
    """Return the view's app; ``changes_root`` defaults to ``[flamingock] changes_folder`` or ``<dags>/changes``."""
    app = FastAPI(title="Flamingock", docs_url=None, redoc_url=None, openapi_url=None)

    def root() -> Path:
        return changes_root or default_changes_root()

    def shown_root(folder: Path) -> str:
        return shown_path(folder, dags_folder())

    @app.get("/", response_class=HTMLResponse)
    def page(user: User) -> HTMLResponse:
        folder = root()
        shown = visible_pipelines(user, folder)
        awaiting = awaiting_approval(p.dag_id for p in shown)
        html = render_page(shown, root=shown_root(folder), user=user.get_name(), awaiting=awaiting)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/pipelines")
    def pipelines(user: User) -> dict[str, Any]:
        folder = root()
        shown = visible_pipelines(user, folder)
        awaiting = awaiting_approval(p.dag_id for p in shown)
        docs = [{**p.to_json(), "awaiting_approval": [a.to_json() for a in awaiting.get(p.dag_id, [])]} for p in shown]
        return {"changes_folder": shown_root(folder), "pipelines": docs}

    @app.exception_handler(HTTPException)
    async def auth_failed(request: Request, exc: HTTPException) -> Response:
        if "text/html" in request.headers.get("accept", "") and exc.status_code in (401, 403):
            html = render_login_needed(str(exc.detail), f"{URL_PREFIX}/")
            return HTMLResponse(html, status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app
