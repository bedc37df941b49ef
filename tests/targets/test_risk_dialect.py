"""Each target's SQL is read in its connection's dialect, known without a network call (SPEC §14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider.core.loader import load_pipeline
from flamingock_provider.targets.risk import pipeline_risks, unit_dialect
from tests.conftest import sql_unit, write_tree

PIPELINE = "targets:\n  wh: {conn_id: wh_db}\ndefault_target: wh\n"
INDEX = sql_unit("idx", "CREATE INDEX ix ON orders (customer_id)")


@pytest.mark.parametrize(
    ("uri", "dialect", "level"),
    [
        ("postgres://u:p@db.example:5432/sales", "postgres", "locking"),
        ("postgresql://u:p@db.example/sales", "postgres", "locking"),
        ("mysql://u:p@db.example/sales", "mysql", "safe"),
        ("sqlite:////tmp/x.db", "sqlite", "safe"),
    ],
)
def test_dialect_from_the_connection_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str, dialect: str, level: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WH_DB", uri)
    pipeline = load_pipeline(write_tree(tmp_path / "p", {"pipeline.yaml": PIPELINE, "0001_idx.yaml": INDEX}))
    assert unit_dialect(pipeline, pipeline.units[0]) == (dialect, ())
    (risk,) = pipeline_risks(pipeline)
    assert risk.level.value == level and risk.notes == ()


def test_unknown_connection_reads_generic_sql_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_WH_DB", raising=False)
    pipeline = load_pipeline(write_tree(tmp_path / "p", {"pipeline.yaml": PIPELINE, "0001_idx.yaml": INDEX}))
    (risk,) = pipeline_risks(pipeline)
    assert risk.level.value == "locking"  # generic: the careful reading
    note = risk.to_json()["reasons"][0]
    assert note.startswith("SQL read in the generic dialect:") and "'wh_db'" in note


def test_a_custom_secrets_backend_is_never_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flamingock_provider.targets import connections

    monkeypatch.setenv("AIRFLOW_CONN_WH_DB", "postgres://u:p@db/sales")
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND", "some.remote.Backend")
    connections._custom_secrets_backend.cache_clear()
    try:
        pipeline = load_pipeline(write_tree(tmp_path / "p", {"pipeline.yaml": PIPELINE, "0001_idx.yaml": INDEX}))
        assert unit_dialect(pipeline, pipeline.units[0])[0] is None
    finally:
        monkeypatch.delenv("AIRFLOW__SECRETS__BACKEND")
        connections._custom_secrets_backend.cache_clear()
