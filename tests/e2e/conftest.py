"""One real Airflow 3 per test session (``airflow standalone``), shared by every e2e test.

Each test uses its own pipeline folder (its own DAG, lease and tables), so tests never wait for
each other's runs. The Airflow processes and the test process share ``FLAMINGOCK_HOME`` and the
``warehouse_db`` connection: what a run writes, ``commands.history`` in the test reads.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.e2e.git_bundle import GitBundleRepo, bundle_config
from tests.e2e.harness import VENV_BIN, AirflowClient, AirflowServer


@pytest.fixture(scope="session")
def git_bundle(tmp_path_factory: pytest.TempPathFactory) -> GitBundleRepo:
    """A local git repository served to the session's Airflow as a second DAG bundle (a GitDagBundle)."""
    return GitBundleRepo.create(tmp_path_factory.mktemp("git-bundle") / "repo")


@pytest.fixture(scope="session")
def airflow_server(tmp_path_factory: pytest.TempPathFactory, git_bundle: GitBundleRepo) -> Iterator[AirflowServer]:
    """Start Airflow once per session; stop it (the whole process group) at the end."""
    if not (VENV_BIN / "airflow").exists() and shutil.which("airflow") is None:
        pytest.skip("the `airflow` command is not installed in this environment")
    server = AirflowServer(tmp_path_factory.mktemp("airflow-e2e"), extra_env=bundle_config(git_bundle))
    server.start().close()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def session_client(airflow_server: AirflowServer) -> Iterator[AirflowClient]:
    client = AirflowClient(airflow_server.url, airflow_server.admin_password())
    yield client
    client.close()


@pytest.fixture
def airflow(
    airflow_server: AirflowServer, session_client: AirflowClient, monkeypatch: pytest.MonkeyPatch
) -> AirflowClient:
    """The REST client; the test process sees the same audit store and target as the Airflow processes."""
    monkeypatch.setenv("FLAMINGOCK_HOME", str(airflow_server.flamingock_home))
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", airflow_server.env["AIRFLOW_CONN_WAREHOUSE_DB"])
    return session_client
