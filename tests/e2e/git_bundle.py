"""A local git repository as an Airflow ``GitDagBundle``: the session's Airflow reads DAGs from it too.

The repository starts with no DAG file, so the DAG processor has nothing to parse there (it parses
every file of every bundle every few seconds: a second loader would double that cost for the whole
session). A test commits the Flamingock loader with a pipeline folder, runs it, and every audit entry
carries that commit as ``bundle_version``; :meth:`GitBundleRepo.empty` commits the removal afterwards.
Without the git provider installed the bundle is left out and the tests that need it skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

BUNDLE_NAME = "flamingock-git"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "e2e",
    "GIT_AUTHOR_EMAIL": "e2e@local",
    "GIT_COMMITTER_NAME": "e2e",
    "GIT_COMMITTER_EMAIL": "e2e@local",
}


def git_provider_installed() -> bool:
    try:
        import airflow.providers.git.bundles.git  # noqa: F401
    except ImportError:
        return False
    return shutil.which("git") is not None


@dataclass(frozen=True)
class GitBundleRepo:
    path: Path

    @classmethod
    def create(cls, path: Path) -> GitBundleRepo:
        repo = cls(path)
        path.mkdir(parents=True)
        (path / "README").write_text("DAGs of the e2e tests' GitDagBundle\n")
        repo.git("init", "-q", "-b", "main")
        repo.commit("an empty bundle")
        return repo

    def git(self, *args: str) -> str:
        import os

        env = {**os.environ, **GIT_ENV}
        done = subprocess.run(["git", *args], cwd=self.path, env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def commit(self, message: str) -> str:
        """Commit everything; return the commit id."""
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def add_pipeline(self, name: str, files: dict[str, str]) -> str:
        """Commit the loader and a pipeline folder under ``changes/``; return the commit id."""
        shutil.copy(REPO / "dags" / "flamingock_dags.py", self.path / "flamingock_dags.py")
        shutil.copy(REPO / "dags" / ".airflowignore", self.path / ".airflowignore")
        for rel, text in files.items():
            target = self.path / "changes" / name / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return self.commit(f"pipeline {name}")

    def empty(self) -> None:
        """Commit the removal of every DAG file and pipeline: the bundle costs the DAG processor nothing again."""
        for child in self.path.iterdir():
            if child.name not in (".git", "README"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.commit("empty the bundle")


def bundle_config(repo: GitBundleRepo) -> dict[str, str]:
    """Airflow settings: the DAGs folder bundle, plus the git repository when the git provider is there."""
    bundles = [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {},  # Airflow's default: [core] dags_folder
        }
    ]
    if git_provider_installed():
        bundles.append(
            {
                "name": BUNDLE_NAME,
                "classpath": "airflow.providers.git.bundles.git.GitDagBundle",
                "kwargs": {"tracking_ref": "main", "repo_url": f"file://{repo.path}"},
            }
        )
    return {
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
        # Clones of git bundles go under <tmp>/airflow/dag_bundles by default, shared by every Airflow on the
        # machine: an earlier session's clone would serve its old commits. Keep this session's beside its repo.
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(repo.path.parent / "bundles"),
    }
