"""Rehearsals on real servers: PostgreSQL and MariaDB, MongoDB (SecantusDB), DynamoDB and S3 (moto), Kafka (Tansu).

Each pipeline's real target is a connection the rehearsal must never reach: another database on the
same server (SQL, MongoDB), or an endpoint nothing listens on (AWS, Kafka), so a stray call would fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flamingock_provider import commands
from flamingock_provider.exceptions import RehearsalRefusedError
from tests.conftest import sql_unit, write_tree
from tests.fixtures.aws_pipelines import unit
from tests.fixtures.mongo_server import MongoServer
from tests.fixtures.moto_server import REGION, MotoServer
from tests.fixtures.sql_databases import SqlDatabase

pytestmark = pytest.mark.slow
NOWHERE = "http://127.0.0.1:9"  # discard port: nothing answers


def pipeline(root: Path, files: dict[str, str], target: str = "warehouse", conn_id: str = "real_db") -> Path:
    return write_tree(root, {"pipeline.yaml": f"targets:\n  {target}: {{conn_id: {conn_id}}}\n", **files})


def python_unit(unit_id: str, target: str, apply: str, rollback: str) -> str:
    return (
        f"ID = {unit_id!r}\nAUTHOR = 'tester'\nTARGET = {target!r}\nRISK = 'safe'\n\n"
        f"def apply(ctx):\n    {apply}\n\n\ndef rollback(ctx):\n    {rollback}\n"
    )


# -- PostgreSQL and MariaDB ---------------------------------------------------------------------


def test_sql_servers_pass_a_correct_pipeline_and_report_a_forgotten_column_and_index(
    sql_database: SqlDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = sql_database.server.create_database(f"{sql_database.name}_s")
    monkeypatch.setenv("AIRFLOW_CONN_REAL_DB", sql_database.uri)
    monkeypatch.setenv("AIRFLOW_CONN_SCRATCH_DB", scratch)
    good = {
        "0001_orders.yaml": sql_unit(
            "orders", "CREATE TABLE orders (id INT PRIMARY KEY, total INT NOT NULL DEFAULT 0)", "DROP TABLE orders"
        ),
        "0002_sku.yaml": sql_unit("sku", "CREATE INDEX ix_total ON orders (total)", "DROP INDEX ix_total ON orders")
        if sql_database.dialect == "mysql"
        else sql_unit("sku", "CREATE INDEX ix_total ON orders (total)", "DROP INDEX ix_total"),
        "0003_seed.yaml": sql_unit("seed", "INSERT INTO orders (id) VALUES (1), (2)", "DELETE FROM orders"),
    }
    try:
        report = commands.rehearse(pipeline(tmp_path / "good", good), {"warehouse": "scratch_db"})
        assert report["ok"] is True, report
        sql_database.server.drop_database(f"{sql_database.name}_s")
        sql_database.server.create_database(f"{sql_database.name}_s")
        bad = {
            **good,
            "0002_sku.yaml": sql_unit("sku", "CREATE INDEX ix_total ON orders (total)", "SELECT 1"),
            "0004_discount.yaml": sql_unit("discount", "ALTER TABLE orders ADD COLUMN discount INT", "SELECT 1"),
        }
        report = commands.rehearse(pipeline(tmp_path / "bad", bad), {"warehouse": "scratch_db"})
        assert report["mismatches"] == [
            {"id": "discount", "phase": "undo", "detail": "table orders: column discount still present"},
            {"id": "sku", "phase": "undo", "detail": "table orders: index ix_total still present"},
        ]
        here = "DATABASE()" if sql_database.dialect == "mysql" else "current_schema()"
        real_tables = f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {here}"
        assert sql_database.rows(real_tables) == [(0,)]
    finally:
        sql_database.server.drop_database(f"{sql_database.name}_s")


def test_sql_an_alias_connection_of_the_real_database_is_refused(
    sql_database: SqlDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REAL_DB", sql_database.uri)
    monkeypatch.setenv("AIRFLOW_CONN_ALIAS_DB", sql_database.uri.replace("127.0.0.1", "localhost"))
    pipe = pipeline(tmp_path / "p", {"0001_t.yaml": sql_unit("t", "CREATE TABLE t (x INT)", "DROP TABLE t")})
    with pytest.raises(RehearsalRefusedError, match=f"'alias_db' reaches {sql_database.dialect} localhost"):
        commands.rehearse(pipe, {"warehouse": "alias_db"})


# -- MongoDB ------------------------------------------------------------------------------------


def test_mongo_reports_an_index_the_rollback_forgets(
    mongo_server: MongoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REAL_MONGO", mongo_server.connection_json("real_shop"))
    monkeypatch.setenv("AIRFLOW_CONN_SCRATCH_MONGO", mongo_server.connection_json(f"scratch_{tmp_path.name[-20:]}"))
    files = {
        "0001_users.yaml": unit(
            "users",
            "mongo.create_collection",
            {"collection": "users", "validator": {"$jsonSchema": {"required": ["email"]}}},
        ),
        "0002_email.yaml": unit("email", "mongo.create_index", {"collection": "users", "keys": {"email": 1}}),
        "0003_seed.yaml": unit("seed", "mongo.insert", {"collection": "users", "documents": [{"email": "a@x"}]}),
        "0004_by_name.py": python_unit(
            "by-name", "catalog", "ctx.target.users.create_index('name')", "pass  # forgets the index"
        ),
    }
    report = commands.rehearse(pipeline(tmp_path / "p", files, "catalog", "real_mongo"), {"catalog": "scratch_mongo"})
    assert report["mismatches"] == [
        {"id": "by-name", "phase": "undo", "detail": "collection users: index name_1 still present"}
    ]
    assert report["rehearsed"] == ["users", "email", "seed", "by-name"]
    client = mongo_server.client()
    try:
        assert "users" not in client["real_shop"].list_collection_names()
    finally:
        client.close()


# -- DynamoDB and S3 ----------------------------------------------------------------------------


def aws_connections(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    real = {**moto.connection, "extra": {"endpoint_url": NOWHERE, "region_name": REGION}}
    monkeypatch.setenv("AIRFLOW_CONN_REAL_AWS", json.dumps(real))
    monkeypatch.setenv("AIRFLOW_CONN_SCRATCH_AWS", json.dumps(moto.connection))


def test_aws_a_correct_pipeline_passes_and_a_forgotten_object_is_reported(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws_connections(moto, monkeypatch)
    table = {"table": "catalog", "partition_key": {"name": "pk", "type": "S"}}
    files = {
        "0001_table.yaml": unit("table", "dynamodb.create_table", table),
        "0002_items.yaml": unit(
            "items", "dynamodb.put_items", {"table": "catalog", "items": [{"pk": "a"}, {"pk": "b"}]}
        ),
        "0003_bucket.yaml": unit("bucket", "s3.create_bucket", {"bucket": "raw"}),
        "0004_object.yaml": unit("object", "s3.put_object", {"bucket": "raw", "key": "ref/a.json", "body": "{}"}),
    }
    report = commands.rehearse(pipeline(tmp_path / "good", files, "lake", "real_aws"), {"lake": "scratch_aws"})
    assert report["ok"] is True, report
    moto.reset()
    files = {"0003_bucket.yaml": files["0003_bucket.yaml"]}
    files["0005_tmp.py"] = python_unit(
        "tmp",
        "lake",
        "[ctx.client('s3').put_object(Bucket='raw', Key=k, Body=b'x') for k in ('tmp/a.json', 'tmp/b.json')]",
        "ctx.client('s3').delete_object(Bucket='raw', Key='tmp/b.json')",
    )
    report = commands.rehearse(pipeline(tmp_path / "bad", files, "lake", "real_aws"), {"lake": "scratch_aws"})
    assert report["mismatches"] == [
        {"id": "tmp", "phase": "undo", "detail": "bucket raw: key tmp/a.json still present"},
        {
            "id": "bucket",
            "phase": "undo",
            "detail": "the rollback failed: S3 bucket 'raw' still holds objects this change did not put; move them "
            "away (or roll back the changes that put them) and run the rollback again",
        },
    ]


def test_aws_a_scratch_on_the_real_account_is_refused(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REAL_AWS", json.dumps(moto.connection))
    monkeypatch.setenv("AIRFLOW_CONN_SCRATCH_AWS", json.dumps(moto.connection))
    pipe = pipeline(
        tmp_path / "p", {"0001_b.yaml": unit("b", "s3.create_bucket", {"bucket": "raw"})}, "lake", "real_aws"
    )
    with pytest.raises(RehearsalRefusedError, match="'scratch_aws' reaches aws http://127.0.0.1"):
        commands.rehearse(pipe, {"lake": "scratch_aws"})
    assert moto.client("s3").list_buckets()["Buckets"] == []


# -- Kafka --------------------------------------------------------------------------------------


def test_kafka_topics_partitions_and_configs_are_restored(
    kafka: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixtures.kafka_server import CONN_ID

    monkeypatch.setenv(
        "AIRFLOW_CONN_REAL_KAFKA", json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": "127.0.0.1:9"}})
    )
    files = {
        "0001_clicks.yaml": unit("clicks", "kafka.create_topic", {"topic": "clicks", "partitions": 3}),
        "0002_retention.yaml": unit(
            "retention", "kafka.update_topic_config", {"topic": "clicks", "set": {"retention.ms": "3600000"}}
        ),
    }
    report = commands.rehearse(pipeline(tmp_path / "p", files, "events", "real_kafka"), {"events": CONN_ID})
    assert report["ok"] is True, report
    assert report["rehearsed"] == ["clicks", "retention"]
