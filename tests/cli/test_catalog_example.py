"""The example pipeline ``dags/changes/catalog`` against a real server, through the command API."""

from __future__ import annotations

import pytest
from pymongo.errors import WriteError

from flamingock_provider import commands
from tests.conftest import REPO
from tests.fixtures.mongo_server import MongoDatabase

CATALOG = REPO / "dags" / "changes" / "catalog"


def test_example_validates_without_warnings() -> None:
    report = commands.validate(CATALOG)
    assert report["ok"] and report["warnings"] == [], report
    assert [s["name"] for s in report["stages"]] == ["collections", "indexes", "reference_data", "views"]


def test_example_applies_and_undoes(mongo_conn: MongoDatabase) -> None:
    first = commands.apply(CATALOG)
    assert first["failed"] is None and len(first["applied"]) == 9
    db = mongo_conn.db
    assert db.categories.count_documents({}) == 4 and db.products.count_documents({}) == 4
    with pytest.raises(WriteError):
        db.products.insert_one({"sku": "bad", "name": "x", "category": "tools", "price_cents": -1})
    storefront = list(db.storefront_products.find({}, sort=[("sku", 1)]))
    assert [p["sku"] for p in storefront] == ["GAR-0002", "KIT-0001", "KIT-0002"]
    assert storefront[0]["category_name"] == "Garden tools"
    python_unit = commands.history(CATALOG, "denormalize-category-names")["entries"]
    assert {e["tx_strategy"] for e in python_unit} == {"TX_SHARED"}
    assert commands.apply(CATALOG)["skipped"] == first["applied"]

    undone = commands.undo(CATALOG, to="create-products")
    assert undone["failed"] is None and undone["rolled_back"] == list(reversed(first["applied"][2:]))
    assert set(db.list_collection_names()) >= {"categories", "products"}
    assert "storefront_products" not in db.list_collection_names()
    assert db.products.count_documents({}) == 0 and db.categories.count_documents({}) == 0
    assert set(db.products.index_information()) == {"_id_"}
