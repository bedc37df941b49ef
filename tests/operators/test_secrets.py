"""Connection secrets never reach what Airflow keeps of a Flamingock run: XComs, rendered fields, task logs.

Passwords and tokens are planted in ``AIRFLOW_CONN_*`` sqlite and http connections that the run really
uses (the HTTP API records the basic-auth header). Runs through ``dag.test()``: apply, plan, a failing
HTTP unit with compensation, a failing SQL unit, undo. Then the metadata DB (XCom values, rendered
template fields, run conf) and the task logs are searched for each secret, also base64- and URL-encoded.

``dag.test()`` runs the tasks in the calling process, so their logs are that process's output, not
files: this process's (at the session's WARNING level) and, for the failing HTTP run, the output of
``airflow dags test`` at INFO. Any file under ``AIRFLOW_HOME/logs`` is searched too.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import VENV_BIN, write_tree
from tests.fixtures.airflow_dags import load_dag, make_pipeline, run_dag
from tests.fixtures.http_api import HttpApi

SECRETS = {name: f"{name}-{uuid.uuid4().hex[:12]}" for name in ("sqlpw", "sqltok", "httppw", "httptok")}
HTTP_LOGIN = "svc-flamingock"
PIPELINE = (
    "audit: {conn_id: sec_audit}\nlock: {poke_interval_seconds: 0.1}\n"
    "targets:\n  warehouse: {conn_id: sec_target}\n  api: {conn_id: sec_api}\ndefault_target: warehouse\n"
)
UNITS = {
    "01_schema/0001_table.yaml": "id: table\nauthor: t\ntemplate: sql\napply: {statements: 'CREATE TABLE t (x INT)'}\n"
    "rollback: {statements: 'DROP TABLE t'}\n",
    "01_schema/0002_api.yaml": "id: api\nauthor: t\ntarget: api\ntemplate: http.request\n"
    "apply: {method: PUT, endpoint: /v1/settings, json: {retention: 30}}\nrollback: {method: DELETE, endpoint: /v1/settings}\n",
}
API_DOWN = (
    "id: api-down\nauthor: t\ntarget: api\ntemplate: http.request\ntransactional: false\n"
    "apply: {method: POST, endpoint: /v1/fail}\nrollback: {method: DELETE, endpoint: /v1/fail}\n"
)
BROKEN = "id: broken\nauthor: t\ntemplate: sql\napply: {statements: 'INSERT INTO nope VALUES (1)'}\n"


def encodings(secret: str) -> set[str]:
    basic = base64.b64encode(f"{HTTP_LOGIN}:{secret}".encode()).decode()
    return {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode(), basic}


def leaks(texts: dict[str, str]) -> list[str]:
    return [
        f"{name} ({form!r}) in {where}"
        for name, secret in SECRETS.items()
        for form in encodings(secret)
        for where, text in texts.items()
        if form in text
    ]


@pytest.fixture
def planted(tmp_path: Path, http_api_server: HttpApi, monkeypatch: pytest.MonkeyPatch) -> HttpApi:
    """Connections with planted secrets: a SQLite audit store and target, and the recording HTTP API."""

    def sqlite(name: str) -> str:
        return json.dumps(
            {
                "conn_type": "sqlite",
                "host": str(tmp_path / name),
                "password": SECRETS["sqlpw"],
                "extra": {"token": SECRETS["sqltok"]},
            }
        )

    api = {**http_api_server.connection, "login": HTTP_LOGIN, "password": SECRETS["httppw"]}
    api["extra"] = {"X-Api-Token": SECRETS["httptok"]}
    monkeypatch.setenv("AIRFLOW_CONN_SEC_AUDIT", sqlite("audit.db"))
    monkeypatch.setenv("AIRFLOW_CONN_SEC_TARGET", sqlite("target.db"))
    monkeypatch.setenv("AIRFLOW_CONN_SEC_API", json.dumps(api))
    http_api_server.reset()
    http_api_server.respond("POST", "/v1/fail", 500, {"error": "quota exceeded"})
    return http_api_server


def metadata_texts(dag_id: str) -> dict[str, str]:
    """Every XCom value, rendered template field and run conf Airflow keeps for ``dag_id``."""
    from airflow.models import DagRun
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    texts: dict[str, str] = {}
    with create_session() as session:
        for x in session.query(XComModel).filter(XComModel.dag_id == dag_id):
            texts[f"XCom {x.run_id} {x.task_id} {x.key}"] = json.dumps(x.value, default=str)
        for r in session.query(RenderedTaskInstanceFields).filter(RenderedTaskInstanceFields.dag_id == dag_id):
            texts[f"rendered fields {r.run_id} {r.task_id}"] = json.dumps(r.rendered_fields, default=str)
        for run in session.query(DagRun).filter(DagRun.dag_id == dag_id):
            texts[f"conf {run.run_id}"] = json.dumps(run.conf, default=str)
    return texts


def log_files(home: Path) -> dict[str, str]:
    return {str(p): p.read_text("utf-8", "replace") for p in (home / "logs").rglob("*") if p.is_file()}


def airflow_dags_test(dag_id: str, conf: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """Run ``airflow dags test`` (``dag.test()`` from the CLI) with task logs at INFO, as deployed."""
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}
    return subprocess.run(
        [str(VENV_BIN / "airflow"), "dags", "test", dag_id, "-c", json.dumps(conf)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_secrets_stay_out_of_xcoms_and_task_logs(
    changes: Path, planted: HttpApi, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = make_pipeline(changes, "secrets", UNITS, PIPELINE)
    assert run_dag(load_dag("flamingock_secrets")).state == "success"
    basic = base64.b64encode(f"{HTTP_LOGIN}:{SECRETS['httppw']}".encode()).decode()
    assert f"Basic {basic}" in {r.headers.get("Authorization") for r in planted.requests}  # the secret was used
    assert run_dag(load_dag("flamingock_secrets"), action="plan").state == "success"
    write_tree(folder, {"02_data/0003_api_down.yaml": API_DOWN})
    http_failed = airflow_dags_test("flamingock_secrets", {"action": "apply", "undo_to": None})
    assert "quota exceeded" in http_failed.stdout + http_failed.stderr, http_failed.stderr[-3000:]
    assert "lease of secrets taken by" in http_failed.stdout + http_failed.stderr  # INFO lines are there
    assert "compensated ['api-down']" in http_failed.stdout + http_failed.stderr
    (folder / "02_data/0003_api_down.yaml").unlink()
    write_tree(folder, {"02_data/0004_broken.yaml": BROKEN})
    failed = run_dag(load_dag("flamingock_secrets"))
    assert failed.state == "failed" and failed.tasks["data.apply_broken"] == "failed", failed.tasks
    (folder / "02_data/0004_broken.yaml").unlink()
    undone = run_dag(load_dag("flamingock_secrets"), action="undo", undo_to="table")
    assert undone.state == "success", undone.tasks
    assert ("DELETE", "/v1/settings") in planted.calls()

    captured = capfd.readouterr()
    assert "no such table: nope" in captured.out + captured.err  # the failing unit's task log was captured
    texts = {
        **metadata_texts("flamingock_secrets"),
        "task logs (stdout)": captured.out,
        "task logs (stderr)": captured.err,
        "`airflow dags test` stdout": http_failed.stdout,
        "`airflow dags test` stderr": http_failed.stderr,
        **log_files(Path(os.environ["AIRFLOW_HOME"])),
    }
    xcoms = [where for where in texts if where.startswith("XCom")]
    assert any(" lock " in where for where in xcoms) and any(" undo " in where for where in xcoms), xcoms
    assert leaks(texts) == []
    # Airflow masks known secrets in task logs as ***: nothing even tried to log one
    assert [where for where, text in texts.items() if "***" in text] == []


def test_the_search_finds_a_planted_secret() -> None:
    basic = base64.b64encode(f"{HTTP_LOGIN}:{SECRETS['httppw']}".encode()).decode()
    found = leaks({"a log": f"Authorization: Basic {basic}", "an XCom": json.dumps({"uri": quote(SECRETS["sqlpw"])})})
    assert {leak.split(" ")[0] for leak in found} == {"httppw", "sqlpw"}
