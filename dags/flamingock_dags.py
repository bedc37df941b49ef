"""Airflow DAG loader: one DAG per Flamingock pipeline folder under changes/ (see SPEC §10)."""

from pathlib import Path

from flamingock_provider import build_dags

globals().update(build_dags(Path(__file__).parent / "changes"))
