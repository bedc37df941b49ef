"""A distributed Airflow 3 for end-to-end tests and benchmarks: the CeleryExecutor on loopback.

:class:`CeleryDeployment` starts every component as its own process, the way a cluster runs them:
``api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` share one control-plane home, and
each ``airflow celery worker`` gets its own ``AIRFLOW_HOME`` and ``FLAMINGOCK_HOME`` — like separate
machines, they share only the DAGs folder, the PostgreSQL metadata database and the Redis broker. A
worker reports its own hostname (``celery-worker-N``, through ``[core] hostname_callable``), so a task
instance shows which worker ran it. Each process has its own process group: :meth:`kill_worker`
SIGKILLs one worker with every task it runs, :meth:`start_worker` brings it back.

Layout of the root::

    control/airflow_home/                       the control plane's AIRFLOW_HOME (logs, airflow.cfg)
    worker-N/airflow_home/, worker-N/flamingock/  each worker's own homes (task logs live here)
    dags/                                       the shared DAGs folder: loader, changes/<pipeline>/
    logs/<process>.log                          each process's output
    passwords.json                              the simple auth manager's admin password
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.harness import (
    REPO,
    VENV_BIN,
    AirflowClient,
    AirflowStartError,
    components_healthy,
    free_port,
    wait_until,
)

ADMIN_PASSWORD = "admin"
CONTROL_PLANE = ("api-server", "scheduler", "dag-processor", "triggerer")
HOSTNAME_CALLABLE = "tests.e2e.celery_hostname.hostname"
HOSTNAME_ENV = "FLAMINGOCK_TEST_HOSTNAME"
# A fixed Fernet key and JWT secret: every process must encrypt and sign alike (an Airflow home would
# otherwise generate its own). Test values only.
FERNET_KEY = "5pWYdK3vhVAWtFHQ0nbXRAEnnwWx1BzORiO7GrfsKdk="
JWT_SECRET = "flamingock-celery-tests-jwt-secret"


@dataclass
class Worker:
    """One ``airflow celery worker``: its name, homes, and process."""

    name: str
    root: Path
    log_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_offset: int = 0  # where the current start's output begins in its (appended) log

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow_home"

    @property
    def flamingock_home(self) -> Path:
        return self.root / "flamingock"

    def task_logs(self) -> list[Path]:
        return sorted((self.airflow_home / "logs").rglob("*.log"))


class CeleryDeployment:
    """A CeleryExecutor Airflow under ``root``; :meth:`start` waits until every component is ready.

    ``metadata_uri`` is a SQLAlchemy URL of an empty PostgreSQL database; ``broker_url`` a Redis URL;
    ``extra_env`` (connections, ...) reaches every process. Write pipelines before :meth:`start`: the DAG
    processor parses them at start-up, then only every ``reparse_seconds`` (re-parsing all the time would
    take the CPU the tasks need on a small machine).
    """

    def __init__(
        self,
        root: Path,
        *,
        metadata_uri: str,
        broker_url: str,
        workers: int = 2,
        concurrency: int = 1,
        reparse_seconds: int = 30,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.dags = root / "dags"
        self.changes = self.dags / "changes"
        self.logs = root / "logs"
        self.control_home = root / "control" / "airflow_home"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.concurrency = concurrency
        self.workers = [Worker(f"celery-worker-{n}", root / f"worker-{n}") for n in range(1, workers + 1)]
        self.reparse_seconds = reparse_seconds
        self.env = self._environment(metadata_uri, broker_url, extra_env or {})
        self._control: dict[str, subprocess.Popen[bytes]] = {}

    def _environment(self, metadata_uri: str, broker_url: str, extra: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FLAMINGOCK"))}
        python_path = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env.update(
            {
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": python_path,  # this checkout's package, and the hostname callable
                "AIRFLOW_HOME": str(self.control_home),
                "FLAMINGOCK_HOME": str(self.root / "control" / "flamingock"),
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_uri,
                "AIRFLOW__CELERY__BROKER_URL": broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_uri.replace("+psycopg2", ""),
                "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                "AIRFLOW__CORE__FERNET_KEY": FERNET_KEY,
                "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
                "AIRFLOW__API__SECRET_KEY": JWT_SECRET,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.root / "passwords.json"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": f"{self.url}/",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(self.reparse_seconds),
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(self.reparse_seconds),
                # Short intervals: finished tasks are seen at once.
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "1",
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                # A SIGKILLed worker's task is declared dead after 12 s without a heartbeat (default 300 s).
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "12",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            }
        )
        env.update(extra)
        return env

    def worker_env(self, worker: Worker) -> dict[str, str]:
        return {
            **self.env,
            "AIRFLOW_HOME": str(worker.airflow_home),
            "FLAMINGOCK_HOME": str(worker.flamingock_home),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker.log_port),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE,
            HOSTNAME_ENV: worker.name,
        }

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 300) -> AirflowClient:
        """Migrate the metadata DB, start the control plane and the workers; return a REST client."""
        self._write_folders()
        try:
            self._migrate()
            for component in CONTROL_PLANE:
                self._control[component] = self._spawn(component, ["airflow", component], self.env)
            for worker in self.workers:
                self.start_worker(worker, wait=False)
            wait_until(self._healthy, timeout, f"the Celery deployment at {self.url} to be healthy", interval=1)
            for worker in self.workers:
                self.wait_worker_ready(worker, timeout)
            return AirflowClient(self.url, ADMIN_PASSWORD)
        except Exception as err:
            self.stop()
            raise AirflowStartError(f"{err}; last output:\n{self.log_tails()}") from err

    def _write_folders(self) -> None:
        for folder in (self.changes, self.logs, self.control_home):
            folder.mkdir(parents=True, exist_ok=True)
        for worker in self.workers:
            worker.airflow_home.mkdir(parents=True, exist_ok=True)
            worker.flamingock_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "dags" / "flamingock_dags.py", self.dags / "flamingock_dags.py")
        # Pipeline folders hold change units (Python ones too), never DAG files of their own.
        (self.dags / ".airflowignore").write_text("changes/\netl_changes/\n", encoding="utf-8")
        (self.root / "passwords.json").write_text(f'{{"admin": "{ADMIN_PASSWORD}"}}', encoding="utf-8")

    def _migrate(self) -> None:
        done = subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise AirflowStartError(f"airflow db migrate failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")

    def _spawn(self, name: str, command: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                [str(VENV_BIN / command[0]), *command[1:]],
                cwd=self.root,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: killed with every child it forked
            )

    def start_worker(self, worker: Worker, *, wait: bool = True, timeout: float = 120) -> None:
        """Start (or restart) ``worker``: one queue, ``concurrency`` slots, its own Celery hostname."""
        command = ["airflow", "celery", "worker", "--celery-hostname", f"{worker.name}@%h"]
        command += ["--concurrency", str(self.concurrency), "--queues", "default", "--without-mingle"]
        command += ["--without-gossip"]
        log = self.logs / f"{worker.name}.log"
        worker.log_offset = log.stat().st_size if log.exists() else 0
        worker.process = self._spawn(worker.name, command, self.worker_env(worker))
        if wait:
            self.wait_worker_ready(worker, timeout)

    def wait_worker_ready(self, worker: Worker, timeout: float) -> None:
        log = self.logs / f"{worker.name}.log"
        marker = f"{worker.name}@"

        def ready() -> bool | None:
            if worker.process is None or worker.process.poll() is not None:
                raise AirflowStartError(f"{worker.name} exited")
            text = log.read_bytes()[worker.log_offset :].decode(errors="replace")
            return True if any(marker in line and "ready." in line for line in text.splitlines()) else None

        wait_until(ready, timeout, f"{worker.name} to be ready", interval=0.5)

    def kill_worker(self, worker: Worker) -> None:
        """SIGKILL the worker's whole process group: the Celery worker, its pool and the task processes."""
        process, worker.process = worker.process, None
        if process is None:
            return
        _killpg(process, signal.SIGKILL)
        process.wait(timeout=10)

    def _healthy(self) -> bool | None:
        for name, process in self._control.items():
            if process.poll() is not None:
                raise AirflowStartError(f"airflow {name} exited with {process.returncode}")
        return True if components_healthy(self.url) else None

    def stop(self, grace: float = 5) -> None:
        """Stop the workers and the control plane: SIGTERM every process group, SIGKILL what is left after ``grace``."""
        processes = [w.process for w in self.workers if w.process is not None] + list(self._control.values())
        for worker in self.workers:
            worker.process = None
        self._control = {}
        for process in processes:
            _killpg(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _killpg(process, signal.SIGKILL)  # the group: children that outlive their parent too
            process.wait(timeout=10)

    def log_tails(self, chars: int = 1500) -> str:
        tails = []
        for log in sorted(self.logs.glob("*.log")):
            tails.append(f"== {log.name} ==\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(tails)


def _killpg(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
