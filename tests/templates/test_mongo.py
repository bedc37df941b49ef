"""Every ``mongo.*`` template applied with ``commands.apply`` and rolled back with ``commands.undo``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from bson.decimal128 import Decimal128
from pymongo.database import Database
from pymongo.errors import WriteError

from flamingock_provider import commands
from tests.conftest import REPO
from tests.fixtures.mongo_pipelines import make_pipeline
from tests.fixtures.mongo_server import MongoDatabase

Check = Callable[[Database[Any]], None]


@pytest.fixture
def pipe(tmp_path: Path, mongo_conn: MongoDatabase) -> Path:
    """Where the test's catalog pipeline goes; ``mongo_conn`` makes its connection reachable."""
    return tmp_path / "catalog"


@dataclass(frozen=True)
class Case:
    """One unit: its YAML body, what must hold once applied, and once rolled back."""

    id: str
    body: str
    applied: Check
    rolled_back: Check

    def file(self, order: int) -> tuple[str, str]:
        return f"{order:04d}_{self.id}.yaml", f"id: {self.id}\nauthor: tester\n{self.body}"


def collections(db: Database[Any]) -> dict[str, str]:
    return {c["name"]: c.get("type", "collection") for c in db.list_collections()}


def indexes(db: Database[Any], collection: str) -> set[str]:
    return set(db[collection].index_information()) if collection in collections(db) else set()


def options(db: Database[Any], collection: str) -> dict[str, Any]:
    [info] = db.list_collections(filter={"name": collection})
    return dict(info.get("options", {}))


def run_cases(pipe: Path, db: Database[Any], cases: list[Case], files: dict[str, str] | None = None) -> None:
    """Apply the units one by one, checking each; then undo them one by one, newest first, checking each."""
    make_pipeline(pipe, dict([case.file(i + 1) for i, case in enumerate(cases)]) | (files or {}))
    for case in cases:
        result = commands.apply(pipe, until=case.id)
        assert result["failed"] is None and result["applied"] == [case.id], result
        case.applied(db)
    for case in reversed(cases):
        result = commands.undo(pipe, last=1)
        assert result["failed"] is None and result["rolled_back"] == [case.id], result
        case.rolled_back(db)
    assert {c["state"] for c in commands.status(pipe)["changes"]} == {"ROLLED_BACK"}


PRODUCTS_SCHEMA = """\
    $jsonSchema:
      bsonType: object
      required: [sku, name]
      properties:
        sku: {bsonType: string}
        name: {bsonType: string}
"""


def _rejects_bad_products(db: Database[Any]) -> None:
    with pytest.raises(WriteError, match="validation"):
        db.products.insert_one({"sku": 42})


def _accepts_bad_products(db: Database[Any]) -> None:
    db.products.insert_one({"sku": 42})
    db.products.delete_many({"sku": 42})


DDL_CASES = [
    Case(
        "create-products",
        f"template: mongo.create_collection\napply:\n  collection: products\n  validator:\n{PRODUCTS_SCHEMA}",
        _rejects_bad_products,
        lambda db: assert_absent(db, "products"),
    ),
    Case(
        "products-sku",
        "template: mongo.create_index\napply: {collection: products, keys: {sku: 1}, unique: true}",
        lambda db: assert_has(indexes(db, "products"), "sku_1"),
        lambda db: assert_has(indexes(db, "products"), "sku_1", present=False),
    ),
    Case(
        "products-by-category",
        "template: mongo.create_index\napply:\n  collection: products\n  keys: [[category, 1], [price, -1]]\n"
        "  name: by_category\n  partial_filter_expression: {active: true}",
        lambda db: assert_has(indexes(db, "products"), "by_category"),
        lambda db: assert_has(indexes(db, "products"), "by_category", present=False),
    ),
    Case(
        "relax-products",
        "template: mongo.modify_collection\napply: {collection: products, validation_action: warn}",
        _accepts_bad_products,
        _rejects_bad_products,
    ),
    Case(
        "create-legacy",
        "template: mongo.create_collection\napply: {collection: legacy_items, capped: true, size: 65536}",
        lambda db: assert_equal(options(db, "legacy_items").get("capped"), True),
        lambda db: assert_absent(db, "legacy_items"),
    ),
    Case(
        "rename-legacy",
        "template: mongo.rename_collection\napply: {collection: legacy_items, to: archived_items}",
        lambda db: assert_equal(
            ("legacy_items" in collections(db), "archived_items" in collections(db)), (False, True)
        ),
        lambda db: assert_equal(
            ("legacy_items" in collections(db), "archived_items" in collections(db)), (True, False)
        ),
    ),
    Case(
        "active-products",
        "template: mongo.create_view\napply:\n  view: active_products\n  view_on: products\n"
        "  pipeline: [{$match: {active: true}}, {$project: {sku: 1}}]",
        lambda db: assert_equal(collections(db).get("active_products"), "view"),
        lambda db: assert_absent(db, "active_products"),
    ),
    Case(
        "drop-sku-index",
        "template: mongo.drop_index\napply: {collection: products, keys: {sku: 1}}",
        lambda db: assert_has(indexes(db, "products"), "sku_1", present=False),
        lambda db: assert_equal(db.products.index_information()["sku_1"].get("unique"), True),
    ),
    Case(
        "drop-active-view",
        "template: mongo.drop_view\napply: {view: active_products}",
        lambda db: assert_absent(db, "active_products"),
        lambda db: assert_equal(options(db, "active_products")["viewOn"], "products"),
    ),
    Case(
        "drop-archive",
        "template: mongo.drop_collection\napply: {collection: archived_items}\n"
        "rollback: {op: create_collection, collection: archived_items}",
        lambda db: assert_absent(db, "archived_items"),
        lambda db: assert_equal(collections(db).get("archived_items"), "collection"),
    ),
]


def assert_absent(db: Database[Any], name: str) -> None:
    assert name not in collections(db)


def assert_has(found: set[str], name: str, *, present: bool = True) -> None:
    assert (name in found) is present, found


def assert_equal(got: Any, expected: Any) -> None:
    assert got == expected


def test_ddl_templates_and_their_rollbacks(pipe: Path, mongo_conn: MongoDatabase) -> None:
    run_cases(pipe, mongo_conn.db, DDL_CASES)
    history = commands.history(pipe, "create-products")["entries"]
    assert {e["tx_strategy"] for e in history} == {"NON_TX"}  # DDL never runs in a transaction


SEED = """[
  {"_id": "eur", "name": "Euro", "rate": {"$numberDecimal": "1.0"}, "since": {"$date": "1999-01-01T00:00:00Z"}},
  {"_id": "usd", "name": "US dollar", "rate": {"$numberDecimal": "1.08"}}
]"""


def _prices(db: Database[Any]) -> dict[str, Any]:
    return {d["sku"]: d.get("price") for d in db.products.find()}


DOCUMENT_CASES = [
    Case(
        "seed-products",
        "template: mongo.insert\napply:\n  collection: products\n  documents:\n"
        "    - {sku: A1, price: 10, added: 2025-01-31}\n    - {sku: B2, price: 20}\n    - {sku: C3, price: 30}",
        lambda db: assert_equal(_prices(db), {"A1": 10, "B2": 20, "C3": 30}),
        lambda db: assert_equal(db.products.count_documents({}), 0),
    ),
    Case(
        "seed-currencies",
        "template: mongo.insert\napply: {collection: currencies, file: files/currencies.json}",
        lambda db: assert_equal(db.currencies.find_one({"_id": "eur"})["since"].year, 1999),
        lambda db: assert_equal(db.currencies.count_documents({}), 0),
    ),
    Case(
        "raise-prices",
        "template: mongo.update\napply:\n  collection: products\n  filter: {price: {$gte: 20}}\n"
        "  update: {$mul: {price: 2}, $set: {repriced: true}}\n  many: true",
        lambda db: assert_equal(_prices(db), {"A1": 10, "B2": 40, "C3": 60}),
        lambda db: assert_equal(
            (_prices(db), db.products.count_documents({"repriced": True})), ({"A1": 10, "B2": 20, "C3": 30}, 0)
        ),
    ),
    Case(
        "upsert-d4",
        "template: mongo.update\napply: {collection: products, filter: {sku: D4}, update: {$set: {price: 5}}, upsert: true}",
        lambda db: assert_equal(_prices(db)["D4"], 5),
        lambda db: assert_equal("D4" in _prices(db), False),
    ),
    Case(
        "drop-a1",
        "template: mongo.delete\napply: {collection: products, filter: {sku: A1}}",
        lambda db: assert_equal(sorted(_prices(db)), ["B2", "C3", "D4"]),
        lambda db: assert_equal(
            db.products.find_one({"sku": "A1"})["added"], datetime(2025, 1, 31, tzinfo=timezone.utc)
        ),
    ),
]


def test_document_templates_are_transactional_and_roll_back(pipe: Path, mongo_conn: MongoDatabase) -> None:
    run_cases(pipe, mongo_conn.db, DOCUMENT_CASES, {"files/currencies.json": SEED})
    assert mongo_conn.db.currencies.count_documents({}) == 0
    entries = commands.history(pipe, "raise-prices")["entries"]
    assert [(e["state"], e["tx_strategy"]) for e in entries] == [
        ("STARTED", "TX_SHARED"),
        ("APPLIED", "TX_SHARED"),
        ("ROLLED_BACK", "TX_SHARED"),
    ]
    before = entries[1]["undo_state"][0]["before"]  # JSON-safe: canonical extended JSON
    assert {d["sku"]: d["price"] for d in before} == {"B2": {"$numberInt": "20"}, "C3": {"$numberInt": "30"}}


def test_decimals_round_trip_through_the_undo_state(pipe: Path, mongo_conn: MongoDatabase) -> None:
    mongo_conn.db.rates.insert_one({"_id": "eur", "rate": Decimal128("1.10")})
    cases = [
        Case(
            "fix-eur",
            "template: mongo.update\napply: {collection: rates, filter: {_id: eur}, update: {$set: {rate: 1.2}}}",
            lambda db: assert_equal(db.rates.find_one()["rate"], 1.2),
            lambda db: assert_equal(str(db.rates.find_one()["rate"]), "1.10"),
        )
    ]
    run_cases(pipe, mongo_conn.db, cases)


def test_payload_strings_are_rendered_with_params(pipe: Path, mongo_conn: MongoDatabase) -> None:
    unit = "template: mongo.insert\napply: {collection: '{{ params.coll }}', documents: [{env: '{{ params.env }}'}]}"
    make_pipeline(pipe, {"0001_seed.yaml": f"id: seed\nauthor: tester\n{unit}\n"})
    assert commands.apply(pipe, params={"coll": "settings", "env": "prod"})["applied"] == ["seed"]
    assert mongo_conn.db.settings.find_one({}, {"_id": 0}) == {"env": "prod"}


def validation(pipe: Path, body: str) -> dict[str, Any]:
    make_pipeline(pipe, {"0001_unit.yaml": f"id: unit\nauthor: tester\n{body}"})
    return commands.validate(pipe)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "template: mongo.create_collection\napply: {collection: p, validationLevel: strict}",
            "field 'apply.validationLevel': unknown key (did you mean 'validation_level'?)",
        ),
        (
            "template: mongo.create_collection\ntransactional: true\napply: {collection: p}",
            "field 'transactional': template 'mongo.create_collection' cannot run in a transaction (DDL)",
        ),
        ("template: mongo.create_index\napply: {collection: p, keys: 5}", "field 'apply.keys': expected index keys"),
        ("template: mongo.insert\napply: {collection: p}", "give exactly one of 'documents' or 'file'"),
        (
            "template: mongo.update\napply: {collection: p, filter: {}, update: {price: 1}}",
            "field 'apply.update': expected update operators",
        ),
        (
            "template: mongo.modify_collection\napply: {collection: p, validation_level: lax}",
            "field 'apply.validation_level': expected one of off, strict, moderate, got 'lax'",
        ),
        (
            "template: mongo.drop_collection\napply: {collection: p}\nrollback: {op: create_colection, collection: p}",
            "field 'rollback.op': name the mongo operation that undoes apply (did you mean 'create_collection'?)",
        ),
        ("template: mongo.create_idx\napply: {}", "(did you mean 'mongo.create_index'?)"),
    ],
)
def test_payloads_are_checked_at_parse_time(pipe: Path, body: str, message: str) -> None:
    report = validation(pipe, body)
    assert not report["ok"]
    assert any(message in e["message"] for e in report["errors"]), report["errors"]


def test_drop_collection_without_rollback_is_allowed_but_not_compensable(pipe: Path) -> None:
    report = validation(pipe, "template: mongo.drop_collection\napply: {collection: p}")
    assert report["ok"] and "not compensable" in report["warnings"][0]["message"]
    assert validation(pipe, "template: mongo.insert\napply: {collection: p, documents: [{a: 1}]}")["warnings"] == []


def test_parsing_imports_no_pymongo() -> None:
    code = (
        "import sys; from flamingock_provider.core.template import get_template; "
        "t = get_template('mongo.insert'); t.validate({'collection': 'c', 'documents': [{}]}, None); "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('pymongo', 'bson', 'airflow')], 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
