"""Audit entries name the code that wrote them: a run from a GitDagBundle records its commit (SPEC §6).

The session's Airflow reads a second DAG bundle, a local git repository (``tests/e2e/git_bundle.py``);
a pipeline committed there runs, and every entry carries that commit as ``bundle_version``, which
``flamingock history`` and the view show. (Entries from the DAGs folder, an unversioned
LocalDagBundle, carry None: ``tests/e2e/test_approval.py``.)
"""

from __future__ import annotations

import pytest

from flamingock_provider import commands
from flamingock_provider.cli.main import main
from tests.conftest import sql_unit
from tests.e2e.git_bundle import GitBundleRepo, git_provider_installed
from tests.e2e.harness import AirflowClient
from tests.e2e.pipelines import pipeline_yaml

pytestmark = pytest.mark.skipif(not git_provider_installed(), reason="apache-airflow-providers-git is not installed")


def test_every_entry_of_a_run_from_a_git_bundle_carries_its_commit(
    git_bundle: GitBundleRepo, airflow: AirflowClient, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "pipeline.yaml": pipeline_yaml(poke=0.5),
        "0001_create.yaml": sql_unit("create-versioned", "CREATE TABLE e2e_git_versioned (id INTEGER)"),
        "0002_seed.yaml": sql_unit("seed-versioned", "INSERT INTO e2e_git_versioned VALUES (1)"),
    }
    commit = git_bundle.add_pipeline("e2e_git_bundle", files)
    try:
        check_run(git_bundle, airflow, commit, capsys)
    finally:
        git_bundle.empty()


def check_run(
    git_bundle: GitBundleRepo, airflow: AirflowClient, commit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dag_id = "flamingock_e2e_git_bundle"
    dag = airflow.wait_for_dag(dag_id, timeout=120)
    assert dag["bundle_name"] == "flamingock-git"
    airflow.unpause(dag_id)
    run_id, state = airflow.run_pipeline(dag_id, {"action": "apply", "undo_to": None})
    assert state == "success", airflow.task_states(dag_id, run_id)
    assert airflow.run(dag_id, run_id)["bundle_version"] == commit

    folder = git_bundle.path / "changes" / "e2e_git_bundle"
    entries = commands.history(folder)["entries"]
    assert len(entries) == 4 and {e["bundle_version"] for e in entries} == {commit}
    assert main(["history", str(folder)]) == 0
    assert commit[:12] in capsys.readouterr().out
