"""The Airflow side of SPEC §3: the executor comes from Airflow's config; tasks and `validate` act on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from flamingock_provider import commands
from flamingock_provider.airflow_config import _cfg_executor, configured_executor
from flamingock_provider.hooks.flamingock import FlamingockHook
from flamingock_provider.operators._common import airflow_errors
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree

EMBEDDED = "the embedded audit store lives on one machine; set audit.conn_id in {} to a postgres, mysql, mongo or aws connection"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    unit = sql_unit("create-t", "CREATE TABLE t (x INT)")
    return write_tree(tmp_path / "inventory", {"pipeline.yaml": WAREHOUSE_PIPELINE, "0001_create.yaml": unit})


def test_a_task_under_celery_fails_at_once_before_opening_the_embedded_store(
    folder: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    with (
        pytest.raises(AirflowFailException, match="embedded audit store lives on one machine") as caught,
        airflow_errors(),
        FlamingockHook(folder).workspace(),
    ):
        pass
    assert str(caught.value) == EMBEDDED.format(folder / "pipeline.yaml")
    assert not (isolated_home / "audit.db").exists()  # no second audit log was started on this machine


def test_a_task_under_the_local_executor_opens_the_embedded_store(
    folder: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    with FlamingockHook(folder).workspace() as ws:
        assert ws.holder() is None
    assert (isolated_home / "audit.db").exists()


def test_validate_warns_when_the_executor_is_not_local(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor,CeleryExecutor")
    warnings = commands.validate(folder)["warnings"]
    assert warnings == [
        {
            "file": str(folder / "pipeline.yaml"),
            "message": "Airflow's executor is CeleryExecutor (not local): " + EMBEDDED.format(folder / "pipeline.yaml"),
        }
    ]
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    assert commands.validate(folder)["warnings"] == []


def test_the_cli_reads_the_executor_from_airflow_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "airflow.cfg"
    monkeypatch.setenv("AIRFLOW_CONFIG", str(cfg))
    assert _cfg_executor() is None
    cfg.write_text("[core]\nexecutor = KubernetesExecutor\n", encoding="utf-8")
    assert _cfg_executor() == "KubernetesExecutor"
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "EdgeExecutor")
    assert configured_executor() == "EdgeExecutor"  # the environment wins, as in Airflow
