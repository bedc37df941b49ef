"""Four ``flamingock apply`` processes race on one MongoDB pipeline: every unit applied exactly once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from flamingock_provider import commands
from tests.conftest import apply_concurrently
from tests.fixtures.mongo_pipelines import make_pipeline
from tests.fixtures.mongo_server import MongoDatabase

RUNNERS = 4
UNITS = {
    "01_schema/0001_products.yaml": "template: mongo.create_collection\napply: {collection: products}",
    "01_schema/0002_sku.yaml": "template: mongo.create_index\napply: {collection: products, keys: {sku: 1}}",
    "02_data/0003_seed.yaml": "template: mongo.insert\napply:\n  collection: products\n"
    "  documents: [{sku: A1, stock: 0}, {sku: B2, stock: 0}]",
    "02_data/0004_restock.yaml": "template: mongo.update\napply:\n  collection: products\n"
    "  filter: {}\n  update: {$inc: {stock: 5}}\n  many: true",
    "02_data/0005_counter.py": (
        "def apply(ctx):\n"
        "    ctx.target.runs.update_one({'_id': 'counter'}, {'$inc': {'n': 1}}, upsert=True, session=ctx.session)\n"
    ),
}


@pytest.fixture
def pipe(tmp_path: Path, mongo_conn: MongoDatabase) -> Path:
    """Where the test's catalog pipeline goes; ``mongo_conn`` makes its connection reachable."""
    return tmp_path / "catalog"


def unit_files() -> dict[str, str]:
    files = {}
    for path, body in UNITS.items():
        unit_id = Path(path).stem.split("_", 1)[1]
        header = (
            f'ID = "{unit_id}"\nAUTHOR = "tester"\n\n\n' if path.endswith(".py") else f"id: {unit_id}\nauthor: tester\n"
        )
        files[path] = header + body + "\n"
    return files


def test_four_cli_processes_apply_every_unit_exactly_once(pipe: Path, mongo_conn: MongoDatabase) -> None:
    make_pipeline(pipe, unit_files())
    runners = apply_concurrently(pipe, RUNNERS)
    assert [runner.returncode for runner in runners] == [0] * RUNNERS, [r.stderr[-1500:] for r in runners]
    results = [json.loads(runner.stdout) for runner in runners]
    applied = Counter(unit for result in results for unit in result["applied"])
    assert applied == Counter(["products", "sku", "seed", "restock", "counter"])  # each once, by someone
    assert all(result["failed"] is None and result["blocked"] is None for result in results)
    db = mongo_conn.db
    assert sorted((d["sku"], d["stock"]) for d in db.products.find()) == [("A1", 5), ("B2", 5)]
    assert db.runs.find_one({"_id": "counter"})["n"] == 1
    states = Counter((e["change_id"], e["state"]) for e in commands.history(pipe)["entries"])
    assert {state for (_, state), n in states.items() if n != 1} == set()  # one STARTED, one APPLIED each
    assert len(states) == 2 * len(UNITS)
    assert commands.status(pipe)["lock"] is None  # the last runner released the lease
    tokens = {e["lock_token"] for e in commands.history(pipe)["entries"]}
    assert len(tokens) == 1  # all of it under one runner's lease
