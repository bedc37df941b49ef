"""Parsing: no network or store access, one DAG per worker parse, a broken folder breaks only its DAG."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flamingock_provider import build_dags
from tests.conftest import sql_unit, write_tree
from tests.fixtures.airflow_env import REPO

GOOD = {"01_schema/0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)")}
REMOTE = (
    "audit: {conn_id: ops_mongo, database: ops}\nlock: {conn_id: redis_locks}\n"
    "targets:\n  catalog: {conn_id: mongo_catalog, database: shop}\n"
)
MONGO_UNIT = "id: m\nauthor: a\ntemplate: mongo.create_collection\napply: {collection: products}\n"
BROKEN_UNIT = sql_unit("x", "SELECT 1").replace("template: sql", "template: sql.nope")
LOADER = (REPO / "dags" / "flamingock_dags.py").read_text()


def dags_folder(tmp_path: Path, pipelines: dict[str, dict[str, str]]) -> Path:
    root = tmp_path / "dags"
    files = {"flamingock_dags.py": LOADER}
    for name, units in pipelines.items():
        files.update({f"changes/{name}/{rel}": text for rel, text in units.items()})
    return write_tree(root, files)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Fail any socket connection or Airflow connection lookup made while the test runs."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError(f"network or connection access while parsing: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from airflow.sdk import BaseHook

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(refuse))
    return attempts


def test_building_dags_touches_no_network_store_or_connection(
    tmp_path: Path, isolated_home: Path, no_network: list[object]
) -> None:
    folder = dags_folder(tmp_path, {"local": {"pipeline.yaml": "targets: {w: {conn_id: warehouse_db}}\n", **GOOD}})
    write_tree(folder / "changes" / "remote", {"pipeline.yaml": REMOTE, "0001_m.yaml": MONGO_UNIT})
    dags = build_dags(folder / "changes")
    assert set(dags) == {"flamingock_local", "flamingock_remote"}
    assert no_network == [] and not (isolated_home / "audit.db").exists()


def test_a_worker_parse_builds_only_the_dag_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flamingock_provider.dag_factory import builder

    names = ["alpha", "beta", "gamma"]
    folder = dags_folder(tmp_path, {n: {"pipeline.yaml": "targets: {w: {conn_id: x}}\n", **GOOD} for n in names})
    loaded: list[str] = []
    real = builder.cached_pipeline
    monkeypatch.setattr(builder, "cached_pipeline", lambda path: loaded.append(Path(path).name) or real(path))
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "flamingock_beta")
    assert list(build_dags(folder / "changes")) == ["flamingock_beta"] and loaded == ["beta"]


def test_a_worker_parse_finds_a_pipeline_whose_id_differs_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = dags_folder(
        tmp_path,
        {
            "alpha": {"pipeline.yaml": "id: beta\ntargets: {w: {conn_id: x}}\n", **GOOD},
            "beta": {"pipeline.yaml": "id: gamma\ntargets: {w: {conn_id: x}}\n", **GOOD},
        },
    )
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "flamingock_beta")
    dags = build_dags(folder / "changes")
    assert list(dags) == ["flamingock_beta"] and dags["flamingock_beta"].get_task("plan").pipeline_ref.endswith("alpha")


def test_parsed_folders_are_cached_until_a_file_changes(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flamingock_provider.core import pipeline_cache

    folder = dags_folder(tmp_path, {"shop": {"pipeline.yaml": "targets: {w: {conn_id: x}}\n", **GOOD}})
    calls: list[str] = []
    real = pipeline_cache.load_pipeline
    monkeypatch.setattr(pipeline_cache, "load_pipeline", lambda path, **kw: calls.append(str(path)) or real(path, **kw))
    first = build_dags(folder / "changes")["flamingock_shop"]
    build_dags(folder / "changes")
    assert len(calls) == 1
    monkeypatch.setattr(pipeline_cache, "_MEMORY", {})  # a new process: the local file cache answers
    again = build_dags(folder / "changes")["flamingock_shop"]
    assert len(calls) == 1 and list((isolated_home / "parse-cache").glob("*.json"))
    assert again.get_task("schema.apply_a").doc_md == first.get_task("schema.apply_a").doc_md
    unit = folder / "changes" / "shop" / "01_schema" / "0001_a.yaml"
    unit.write_text(unit.read_text() + "description: changed\n")
    os.utime(unit, ns=(unit.stat().st_atime_ns, unit.stat().st_mtime_ns + 10**9))
    build_dags(folder / "changes")
    assert len(calls) == 2


def test_the_file_cache_keeps_exact_pipelines_only(tmp_path: Path, isolated_home: Path) -> None:
    from flamingock_provider.core import pipeline_cache
    from flamingock_provider.core.loader import pipeline_fingerprint

    plain = "start_date: 2025-01-01\ntargets: {w: {conn_id: x}}\nmetadata: {team: data}\n"
    dated = "targets: {w: {conn_id: x}}\nmetadata: {since: 2025-01-01}\n"
    folder = dags_folder(
        tmp_path, {"plain": {"pipeline.yaml": plain, **GOOD}, "dated": {"pipeline.yaml": dated, **GOOD}}
    )
    for name, cached in (("plain", True), ("dated", False)):
        key = os.path.abspath(folder / "changes" / name)
        pipeline = pipeline_cache.cached_pipeline(key)
        from_file = pipeline_cache._read_file(key, pipeline_fingerprint(key))
        assert (from_file == pipeline) if cached else (from_file is None)


def test_a_worker_running_another_task_skips_the_asset_outlet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = dags_folder(tmp_path, {"shop": {"pipeline.yaml": "targets: {w: {conn_id: x}}\n", **GOOD}})
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "flamingock_shop")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "schema.apply_a")
    assert build_dags(folder / "changes")["flamingock_shop"].get_task("complete").outlets == []
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "complete")
    assert len(build_dags(folder / "changes")["flamingock_shop"].get_task("complete").outlets) == 1


def test_a_broken_folder_is_its_own_import_error_and_the_others_load(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import BundleDagBag

    folder = dags_folder(
        tmp_path,
        {
            "good": {"pipeline.yaml": "targets: {w: {conn_id: x}}\n", **GOOD},
            "broken": {"pipeline.yaml": "targets: {w: {conn_id: x}}\n", "01_a/0001_x.yaml": BROKEN_UNIT},
        },
    )
    bag = BundleDagBag(dag_folder=str(folder), bundle_path=folder, bundle_name="test")
    assert list(bag.dags) == ["flamingock_good"]
    assert list(bag.import_errors) == ["changes/broken/01_a/0001_x.yaml"]
    message = bag.import_errors["changes/broken/01_a/0001_x.yaml"]
    assert "01_a/0001_x.yaml: field 'template': unknown template 'sql.nope'" in message
    assert "flamingock_broken" in message


@pytest.mark.slow
def test_a_broken_folder_seen_by_a_live_dag_processor(tmp_path: Path, airflow_db: Path) -> None:
    """The real DAG processor files the error under the culprit file and keeps the good DAG clean."""
    from airflow.models.dag import DagModel
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session

    folder = dags_folder(
        tmp_path,
        {
            "procgood": {"pipeline.yaml": "targets: {w: {conn_id: x}}\n", **GOOD},
            "procbroken": {"pipeline.yaml": "targets: {w: {conn_id: x}}\nrun_mode: per_unit\n", **GOOD},
        },
    )
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(folder)}
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "dag-processor", "-n", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with create_session() as session:
        errors = {e.filename: e.stacktrace for e in session.query(ParseImportError)}
        good = session.query(DagModel).filter(DagModel.dag_id == "flamingock_procgood").one()
        broken = session.query(DagModel).filter(DagModel.dag_id == "flamingock_procbroken").one_or_none()
    assert "changes/procbroken/pipeline.yaml" in errors
    assert "field 'run_mode'" in errors["changes/procbroken/pipeline.yaml"]
    assert "flamingock_dags.py" not in errors
    assert not good.has_import_errors and broken is None


def test_repo_dags_folder_has_zero_import_errors() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert {"flamingock_warehouse", "flamingock_events", "flamingock_tenants", "etl_with_changes"} <= set(bag.dags)
    assert all(not Path(path).parent.name.startswith("0") for path in bag.file_last_changed)  # units are not DAG files
