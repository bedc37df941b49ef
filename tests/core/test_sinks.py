"""Audit sinks receive every durable entry; a shared transaction's entries only after it commits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flamingock_provider import commands
from tests.conftest import WAREHOUSE_PIPELINE, sql_unit, write_tree


def test_jsonl_sink_receives_every_entry_in_order(
    tmp_path: Path, sqlite_target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ship" / "audit.jsonl"
    monkeypatch.setenv("FLAMINGOCK_AUDIT_SINKS", "jsonl")
    monkeypatch.setenv("FLAMINGOCK_AUDIT_JSONL", str(out))
    pipe = write_tree(
        tmp_path / "p",
        {
            "pipeline.yaml": WAREHOUSE_PIPELINE,
            "0001_a.yaml": sql_unit("a", "CREATE TABLE a (x INT)"),
            "0002_b.yaml": sql_unit("b", "INSERT INTO nope VALUES (1)"),
        },
    )
    commands.apply(pipe)
    shipped = [json.loads(line) for line in out.read_text().splitlines()]
    stored = commands.history(pipe)["entries"]
    assert [(e["change_id"], e["state"]) for e in shipped] == [(e["change_id"], e["state"]) for e in stored]
    assert [e["seq"] for e in shipped] == [e["seq"] for e in stored]


def test_shared_transaction_entries_reach_sinks_only_after_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "shared.db"
    out = tmp_path / "audit.jsonl"
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_DB", f"sqlite:///{db}")
    monkeypatch.setenv("FLAMINGOCK_AUDIT_SINKS", "jsonl,not_installed")
    monkeypatch.setenv("FLAMINGOCK_AUDIT_JSONL", str(out))
    pipe = write_tree(
        tmp_path / "p",
        {
            "pipeline.yaml": "audit: {conn_id: shared_db}\ntargets:\n  main: {conn_id: shared_db}\n",
            "0001_ok.yaml": sql_unit("ok", "CREATE TABLE ok (x INT)"),
            "0002_bad.yaml": sql_unit("bad", "CREATE TABLE bad (x INT); INSERT INTO nope VALUES (1)"),
        },
    )
    commands.apply(pipe)
    shipped = [(e["change_id"], e["state"], e["tx_strategy"]) for e in map(json.loads, out.read_text().splitlines())]
    assert shipped == [
        ("ok", "STARTED", "TX_SHARED"),
        ("ok", "APPLIED", "TX_SHARED"),
        ("bad", "FAILED", "TX_SHARED"),  # its STARTED was rolled back with the change
    ]
