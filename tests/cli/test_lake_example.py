"""The example pipeline dags/changes/lake against the moto server and the local HTTP API.

Its Airflow run (``dag.test()``) belongs with the Airflow tests; here it runs through the commands.
"""

from __future__ import annotations

import json

from flamingock_provider import commands
from tests.conftest import REPO
from tests.fixtures.http_api import HttpApi
from tests.fixtures.moto_server import MotoServer

LAKE = REPO / "dags" / "changes" / "lake"
UNITS = [
    "create-datasets-table",
    "seed-datasets",
    "datasets-ttl",
    "create-raw-bucket",
    "raw-bucket-lifecycle",
    "ingest-config",
    "register-raw-source",
]


def test_the_lake_example_is_valid_and_every_unit_is_compensable() -> None:
    doc = commands.validate(LAKE)
    assert doc["ok"] and doc["warnings"] == [], doc
    assert [c for s in doc["stages"] for c in s["changes"]] == UNITS


def test_the_lake_example_applies_and_undoes_completely(moto: MotoServer, http_api: HttpApi) -> None:
    http_api.respond("POST", "/api/v1/sources", 201, {"id": "src-1"})
    assert commands.apply(LAKE)["applied"] == UNITS
    dynamodb, s3 = moto.client("dynamodb"), moto.client("s3")
    assert dynamodb.scan(TableName="lake_datasets")["Count"] == 3
    assert len(s3.get_bucket_lifecycle_configuration(Bucket="acme-lake-raw")["Rules"]) == 2
    config = json.loads(s3.get_object(Bucket="acme-lake-raw", Key="config/ingest.json")["Body"].read())
    assert config["catalog_table"] == "lake_datasets"
    assert http_api.calls() == [("POST", "/api/v1/sources")]
    strategies = {e["change_id"]: e["tx_strategy"] for e in commands.history(LAKE)["entries"]}
    assert strategies["seed-datasets"] == "TX_SHARED" and strategies["create-raw-bucket"] == "NON_TX"
    assert commands.apply(LAKE)["skipped"] == UNITS

    assert commands.undo(LAKE, last=len(UNITS))["rolled_back"] == list(reversed(UNITS))
    assert http_api.calls()[-1] == ("DELETE", "/api/v1/sources/acme-lake-raw")
    assert "lake_datasets" not in dynamodb.list_tables()["TableNames"]
    assert "acme-lake-raw" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
