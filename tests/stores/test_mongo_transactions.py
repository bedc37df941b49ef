"""TX_SHARED and TX_SEPARATE on a real server: atomicity, crashes, takeover and marker reconciliation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flamingock_provider import commands
from flamingock_provider.targets.mongo import MongoTargetSession
from tests.conftest import REPO
from tests.fixtures.mongo_pipelines import SHARED_PIPELINE, make_pipeline, separate_pipeline
from tests.fixtures.mongo_server import MongoDatabase

SEED = (
    "id: seed\nauthor: tester\ntemplate: mongo.insert\n"
    "apply: {collection: products, documents: [{_id: 1, sku: A1}, {_id: 2, sku: B2}]}\n"
)
PYTHON_UNIT = """\
ID = "tag-products"
AUTHOR = "tester"


def apply(ctx):
    ctx.target.products.insert_one({"_id": 3, "sku": "C3"}, session=ctx.session)
    if ctx.params.get("fail"):
        raise RuntimeError("unit failed after its write")


def rollback(ctx):
    ctx.target.products.delete_one({"_id": 3}, session=ctx.session)
"""
# Runs `commands.apply` in a child process that dies (SIGKILL) at the chosen moment.
CRASH = """\
import os, signal, sys
from flamingock_provider import commands
from flamingock_provider.targets.mongo import MongoTargetSession

original = MongoTargetSession.commit

def commit(self):
    if sys.argv[2] == "after-commit":
        original(self)
    os.kill(os.getpid(), signal.SIGKILL)

MongoTargetSession.commit = commit
commands.apply(sys.argv[1])
"""
SHORT_LEASE = SHARED_PIPELINE.replace("lease_seconds: 30", "lease_seconds: 2")


@pytest.fixture
def pipe(tmp_path: Path, mongo_conn: MongoDatabase) -> Path:
    """Where the test's catalog pipeline goes; ``mongo_conn`` makes its connection reachable."""
    return tmp_path / "catalog"


def trail(pipe: Path, change: str | None = None) -> list[tuple[str, str, str]]:
    return [(e["change_id"], e["state"], e["tx_strategy"]) for e in commands.history(pipe, change)["entries"]]


def crash(pipe: Path, moment: str) -> None:
    done = subprocess.run([sys.executable, "-c", CRASH, str(pipe), moment], cwd=REPO, timeout=120)
    assert done.returncode == -9


def test_tx_shared_failure_before_commit_leaves_neither_document_nor_entry(
    pipe: Path, mongo_conn: MongoDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pipeline(pipe, {"0001_seed.yaml": SEED})
    original = MongoTargetSession.commit

    def fail(self: MongoTargetSession) -> None:
        assert mongo_conn.db.products.count_documents({}) == 0  # written, but only inside the transaction
        raise RuntimeError("injected failure before commit")

    monkeypatch.setattr(MongoTargetSession, "commit", fail)
    with pytest.raises(RuntimeError, match="injected"):
        commands.apply(pipe)
    assert mongo_conn.db.products.count_documents({}) == 0
    assert trail(pipe) == []  # STARTED and APPLIED were in the rolled-back transaction
    assert commands.status(pipe)["lock"] is None
    monkeypatch.setattr(MongoTargetSession, "commit", original)
    assert commands.apply(pipe)["applied"] == ["seed"]
    assert trail(pipe) == [("seed", "STARTED", "TX_SHARED"), ("seed", "APPLIED", "TX_SHARED")]
    assert mongo_conn.db.products.count_documents({}) == 2


def test_python_unit_failure_in_a_shared_transaction_records_only_failed(pipe: Path, mongo_conn: MongoDatabase) -> None:
    make_pipeline(pipe, {"0001_tag.py": PYTHON_UNIT})
    result = commands.apply(pipe, params={"fail": True})
    assert result["failed"]["id"] == "tag-products" and "after its write" in result["failed"]["error"]
    assert mongo_conn.db.products.count_documents({}) == 0
    assert trail(pipe) == [("tag-products", "FAILED", "TX_SHARED")]
    assert commands.plan(pipe)["changes"][0]["action"] == "apply"  # nothing committed: safe to retry
    assert commands.apply(pipe)["applied"] == ["tag-products"]
    assert mongo_conn.db.products.find_one({"_id": 3}) == {"_id": 3, "sku": "C3"}


def test_crash_inside_a_shared_transaction_leaves_no_trace_and_the_next_run_takes_over(
    pipe: Path, mongo_conn: MongoDatabase
) -> None:
    make_pipeline(pipe, {"0001_seed.yaml": SEED}, SHORT_LEASE)
    crash(pipe, "before-commit")  # its transaction stays open on the server, holding _id 1 and 2
    assert trail(pipe) == [] and mongo_conn.db.products.count_documents({}) == 0
    # The lease expires; the next runner takes it over and ends the dead holder's session.
    assert commands.apply(pipe)["applied"] == ["seed"]
    assert sorted(d["_id"] for d in mongo_conn.db.products.find()) == [1, 2]
    assert trail(pipe) == [("seed", "STARTED", "TX_SHARED"), ("seed", "APPLIED", "TX_SHARED")]


def test_tx_separate_writes_a_marker_and_reconciles_a_crash_after_commit(pipe: Path, mongo_conn: MongoDatabase) -> None:
    target = mongo_conn.client[f"{mongo_conn.name}_target"]
    pipeline_yaml = separate_pipeline(target.name).replace("lease_seconds: 30", "lease_seconds: 2")
    make_pipeline(pipe, {"0001_seed.yaml": SEED}, pipeline_yaml)
    crash(pipe, "after-commit")  # committed in the target; died before APPLIED
    assert trail(pipe) == [("seed", "STARTED", "TX_SEPARATE")]
    assert target.products.count_documents({}) == 2
    [marker] = target.flamingock_markers.find({}, {"_id": 0, "created_at": 0})
    assert marker["pipeline"] == "catalog" and marker["change_id"] == "seed"
    commands.unlock(pipe, force=True)  # until the dead runner's lease expires its STARTED reads "running"
    [decision] = commands.plan(pipe)["changes"]
    assert decision["action"] == "skip" and "committed before a crash" in decision["reason"]
    result = commands.apply(pipe)
    assert result["applied"] == [] and result["skipped"] == ["seed"] and result["failed"] is None
    assert trail(pipe)[-1] == ("seed", "APPLIED", "TX_SEPARATE")
    assert target.flamingock_markers.count_documents({}) == 0  # needed only until APPLIED was recorded
    assert target.products.count_documents({}) == 2  # never applied twice
    assert mongo_conn.db.products.count_documents({}) == 0  # the audit database holds no target data
