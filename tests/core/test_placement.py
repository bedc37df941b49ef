"""SPEC §3: the embedded audit store is refused under a distributed executor, with the message naming audit.conn_id."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider.core.loader import load_pipeline
from flamingock_provider.core.placement import check_audit_placement, distributed_executors, executor_names
from flamingock_provider.exceptions import ConfigurationError, EmbeddedStoreError
from tests.conftest import sql_unit, write_tree

DISTRIBUTED = [
    "CeleryExecutor",
    "KubernetesExecutor",
    "EdgeExecutor",
    "CeleryKubernetesExecutor",
    "airflow.providers.celery.executors.celery_executor.CeleryExecutor",
    "LocalExecutor,CeleryExecutor",
    "LocalExecutor, fleet:airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor",
    "my_company.executors.RemoteExecutor",
]
LOCAL = ["LocalExecutor", "SequentialExecutor", "airflow.executors.local_executor.LocalExecutor", " LocalExecutor ", ""]


def pipeline_at(root: Path, pipeline_yaml: str) -> Path:
    unit = sql_unit("create-t", "CREATE TABLE t (x INT)")
    return write_tree(root / "inventory", {"pipeline.yaml": pipeline_yaml, "0001_create.yaml": unit})


def test_executor_names_read_lists_aliases_and_module_paths() -> None:
    setting = (
        "LocalExecutor, fast:my.module.FastExecutor,airflow.providers.celery.executors.celery_executor.CeleryExecutor"
    )
    assert executor_names(setting) == ("LocalExecutor", "FastExecutor", "CeleryExecutor")


@pytest.mark.parametrize("setting", DISTRIBUTED)
def test_the_embedded_store_is_refused_under_a_distributed_executor(tmp_path: Path, setting: str) -> None:
    folder = pipeline_at(tmp_path, "targets:\n  warehouse: {conn_id: warehouse_db}\n")
    assert distributed_executors(setting)
    with pytest.raises(EmbeddedStoreError) as caught:
        check_audit_placement(load_pipeline(folder), setting)
    assert str(caught.value) == (
        f"the embedded audit store lives on one machine; set audit.conn_id in {folder / 'pipeline.yaml'} to a "
        "postgres, mysql, mongo or aws connection"
    )
    assert isinstance(caught.value, ConfigurationError)  # an Airflow task fails at once on it, no retries


@pytest.mark.parametrize("setting", LOCAL)
def test_the_embedded_store_serves_a_local_executor(tmp_path: Path, setting: str) -> None:
    folder = pipeline_at(tmp_path, "targets:\n  warehouse: {conn_id: warehouse_db}\n")
    assert distributed_executors(setting) == ()
    check_audit_placement(load_pipeline(folder), setting)


def test_a_shared_audit_store_serves_a_distributed_executor(tmp_path: Path) -> None:
    folder = pipeline_at(
        tmp_path, "audit: {conn_id: flamingock_audit}\ntargets:\n  warehouse: {conn_id: warehouse_db}\n"
    )
    check_audit_placement(load_pipeline(folder), "CeleryExecutor")
