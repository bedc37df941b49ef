"""A real Airflow 3 for end-to-end tests and benchmarks: ``airflow standalone`` in its own home.

:class:`AirflowServer` starts api-server, scheduler, dag-processor and triggerer (SQLite metadata
DB, LocalExecutor, free ports) under a temporary root and stops them by killing the process group;
:class:`AirflowClient` talks to its REST API with a token of the generated admin password.

Layout of the root::

    airflow_home/          AIRFLOW_HOME (airflow.cfg, airflow.db, logs, generated passwords)
    dags/flamingock_dags.py + dags/changes/<pipeline>/   the DAGs folder
    flamingock/audit.db    FLAMINGOCK_HOME: the embedded audit store every process shares
    warehouse.db           the SQLite target behind the connection ``warehouse_db``
    staging/               pipelines are written here, then moved into dags/changes/ in one rename
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
FINISHED = frozenset({"success", "failed"})
T = TypeVar("T")


class AirflowStartError(RuntimeError):
    """Airflow did not become healthy; the message carries the tail of its output."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call ``check`` until it returns something other than None; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        time.sleep(interval)


def components_healthy(url: str) -> bool:
    """Whether the Airflow at ``url`` reports its metadata DB, scheduler, triggerer and DAG processor healthy."""
    try:
        health = httpx.get(f"{url}/api/v2/monitor/health", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return False
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((health.get(p) or {}).get("status") == "healthy" for p in parts)


def patient(read: Callable[[], T]) -> T | None:
    """``read()``, or None when the API server did not answer in time (a loaded machine): poll again."""
    try:
        return read()
    except httpx.TimeoutException:
        return None


class AirflowServer:
    """``airflow standalone`` under ``root``; :meth:`start` waits until every component is healthy."""

    def __init__(self, root: Path, *, extra_env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.home = root / "airflow_home"
        self.dags = root / "dags"
        self.changes = self.dags / "changes"
        self.flamingock_home = root / "flamingock"
        self.warehouse_db = root / "warehouse.db"
        self.staging = root / "staging"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = self._environment(extra_env or {})
        self.log_path = root / "standalone.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        # Nothing of the caller's Airflow may leak in (tests/airflow sets its own home and DB).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FLAMINGOCK"))}
        env.update(
            {
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                "AIRFLOW_HOME": str(self.home),
                "FLAMINGOCK_HOME": str(self.flamingock_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": f"{self.url}/",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # A new pipeline folder sits under the (unchanged) loader file: re-parse it often.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "3",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3",
                "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "3",
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "1",
                # A task that ends skipped is seen done only at the next supervisor wake-up (5 s by default).
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                # An unanswered approval times out at the scheduler's next sweep (15 s by default).
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "1",
                "AIRFLOW_CONN_WAREHOUSE_DB": f"sqlite:///{self.warehouse_db}",
            }
        )
        env.update(extra)
        return env

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 240) -> AirflowClient:
        """Write the DAGs folder, start ``airflow standalone``, wait until healthy; return a client."""
        self.changes.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        self.flamingock_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "dags" / "flamingock_dags.py", self.dags / "flamingock_dags.py")
        shutil.copy(REPO / "dags" / ".airflowignore", self.dags / ".airflowignore")
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [str(VENV_BIN / "airflow"), "standalone"],
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() kills every child with it
            )
        try:
            wait_until(self._healthy, timeout, f"Airflow at {self.url} to be healthy", interval=1)
            return AirflowClient(self.url, self.admin_password())
        except Exception as err:
            self.stop()
            raise AirflowStartError(f"{err}; last output:\n{self.log_tail()}") from err

    def _healthy(self) -> bool | None:
        if self._process is not None and self._process.poll() is not None:
            raise AirflowStartError(f"airflow standalone exited with {self._process.returncode}")
        return True if components_healthy(self.url) and self.password_file.exists() else None

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def admin_password(self) -> str:
        return str(json.loads(self.password_file.read_text())["admin"])

    def stop(self, grace: float = 20) -> None:
        """Terminate the whole process group (api-server workers outlive a SIGTERM to the parent)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no output)"

    # -- pipelines --------------------------------------------------------------------------

    def add_pipeline(self, name: str, files: Mapping[str, str]) -> Path:
        """Write a pipeline folder in staging, then move it into ``dags/changes/`` in one rename."""
        staged = self.staging / name
        for rel, text in files.items():
            path = staged / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return self.copy_pipeline(staged)

    def copy_pipeline(self, source: Path, name: str | None = None) -> Path:
        """Copy a pipeline folder into ``dags/changes/`` so that the DAG processor never sees half of it."""
        target = self.changes / (name or source.name)
        if target.exists():
            raise FileExistsError(f"pipeline folder {target} exists; give each test its own pipeline name")
        partial = self.staging / f".copy-{target.name}"
        shutil.copytree(source, partial, ignore=shutil.ignore_patterns("__pycache__"))
        partial.rename(target)
        return target

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``flamingock ARGS`` with the environment the Airflow processes have."""
        return subprocess.run(
            [str(VENV_BIN / "flamingock"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )

    def popen_cli(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(VENV_BIN / "flamingock"), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
        )


class AirflowClient:
    """The REST API of one Airflow, authenticated with a token of the admin's password."""

    def __init__(self, url: str, password: str, username: str = "admin") -> None:
        self.url = url
        self.username = username
        self.password = password
        self.token = self._token()
        # Generous: on a loaded 2-core machine the api-server (SQLite metadata DB) was seen taking 70 s to answer.
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120)

    def _token(self) -> str:
        response = httpx.post(
            f"{self.url}/auth/token", json={"username": self.username, "password": self.password}, timeout=30
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until the DAG processor has serialized ``dag_id``; fail early on its import error."""

        def found() -> dict[str, Any] | None:
            response = self.http.get(f"/api/v2/dags/{dag_id}")
            if response.status_code == 200:
                return dict(response.json())
            errors = [e for e in self.import_errors() if dag_id.removeprefix("flamingock_") in e["filename"]]
            if errors:
                raise AssertionError(f"{dag_id} has import errors: {errors}")
            return None

        return wait_until(found, timeout, f"DAG {dag_id} to appear in the REST API", interval=1)

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v2/importErrors", limit=100)["import_errors"])

    def unpause(self, dag_id: str) -> None:
        self.http.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a run with ``conf`` (what the trigger form sends); return its run id."""
        response = self.http.post(
            f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})}
        )
        response.raise_for_status()
        return str(response.json()["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120) -> str:
        """Wait until the run finishes; return ``success`` or ``failed``."""

        def finished() -> str | None:
            state = patient(lambda: self.run(dag_id, run_id)["state"])
            return str(state) if state in FINISHED else None

        return wait_until(finished, timeout, f"run {run_id} of {dag_id} to finish", interval=1)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        data = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)
        return list(data["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def wait_for_task_state(self, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 60) -> str:
        def reached() -> str | None:
            state = patient(lambda: self.task_states(dag_id, run_id).get(task_id))
            return state if state in states else None

        return wait_until(reached, timeout, f"task {task_id} of {run_id} to be one of {sorted(states)}", interval=0.5)

    def run_pipeline(self, dag_id: str, conf: Mapping[str, Any] | None = None, timeout: float = 120) -> tuple[str, str]:
        """Trigger and wait; return (run id, final state)."""
        run_id = self.trigger(dag_id, conf)
        return run_id, self.wait_for_run(dag_id, run_id, timeout)
