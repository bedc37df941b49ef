"""Risk levels (SPEC §14): every SQL rule on every dialect, every template operation, the unit rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider.core.model import ChangeUnit, Step
from flamingock_provider.core.risk import Finding, RiskLevel, aggregate, assess_unit, resolve
from flamingock_provider.core.template import get_template
from flamingock_provider.templates._sql_risk import analyse

PG, MY, LITE, GENERIC = "postgres", "mysql", "sqlite", None
ALL = (PG, MY, LITE, GENERIC)

# (statement, {dialect: level}); a dialect left out gets the "*" level.
SQL_TABLE: list[tuple[str, dict[str | None, str]]] = [
    ("CREATE TABLE t (a INT)", {"*": "safe"}),
    ("INSERT INTO t VALUES (1)", {"*": "safe"}),
    ("SELECT count(*) FROM t", {"*": "safe"}),
    ("ALTER TABLE t ADD COLUMN c TEXT", {"*": "safe"}),
    ("ALTER TABLE t ADD COLUMN c INT NOT NULL DEFAULT 0", {"*": "safe"}),
    ("DROP TABLE t", {"*": "destructive"}),
    ("DROP TABLE IF EXISTS a, b", {"*": "destructive"}),
    ("DROP VIEW v", {"*": "destructive"}),
    ("DROP INDEX i", {"*": "destructive"}),
    ("DROP SCHEMA s", {"*": "destructive"}),
    ("TRUNCATE TABLE t", {"*": "destructive"}),
    ("DELETE FROM t", {"*": "destructive"}),
    ("DELETE FROM t WHERE a = 1", {"*": "rewrite"}),
    ("UPDATE t SET a = 1", {"*": "rewrite"}),
    ("UPDATE t SET a = 1 WHERE b = 2", {"*": "rewrite"}),
    ("ALTER TABLE t DROP COLUMN c", {"*": "destructive"}),
    ("ALTER TABLE t RENAME TO u", {"*": "destructive"}),
    ("ALTER TABLE t RENAME COLUMN a TO b", {"*": "destructive"}),
    ("RENAME TABLE a TO b", {"*": "destructive"}),
    ("INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 1", {"*": "rewrite"}),
    ("INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE b = 1", {"*": "rewrite"}),
    ("CREATE OR REPLACE VIEW v AS SELECT 1", {"*": "rewrite"}),
    ("REPLACE INTO t VALUES (1)", {MY: "rewrite", LITE: "rewrite", PG: "unknown", GENERIC: "unknown"}),
    ("ALTER TABLE t ALTER COLUMN c TYPE BIGINT", {"*": "locking", LITE: "safe"}),
    ("ALTER TABLE t MODIFY COLUMN c BIGINT", {MY: "locking", PG: "unknown", LITE: "unknown", GENERIC: "unknown"}),
    ("ALTER TABLE t ADD COLUMN c INT NOT NULL", {"*": "locking", LITE: "safe"}),
    ("ALTER TABLE t ALTER COLUMN c SET NOT NULL", {"*": "locking", LITE: "safe"}),
    (
        "ALTER TABLE t ADD COLUMN u UUID DEFAULT gen_random_uuid()",
        {PG: "locking", GENERIC: "locking", MY: "safe", LITE: "safe"},
    ),
    ("ALTER TABLE t ADD COLUMN ts TIMESTAMP DEFAULT now()", {"*": "safe"}),
    ("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id)", {"*": "locking", LITE: "safe"}),
    ("ALTER TABLE t ADD CONSTRAINT uq UNIQUE (a)", {"*": "locking", LITE: "safe"}),
    ("ALTER TABLE t DROP CONSTRAINT fk", {"*": "locking", LITE: "safe"}),
    ("CREATE INDEX i ON t (c)", {PG: "locking", GENERIC: "locking", MY: "safe", LITE: "safe"}),
    ("CREATE UNIQUE INDEX i ON t (c)", {PG: "locking", GENERIC: "locking", MY: "locking", LITE: "safe"}),
    ("CREATE INDEX CONCURRENTLY i ON t (c)", {"*": "safe"}),
    ("VACUUM FULL t", {"*": "locking", LITE: "safe"}),
    ("VACUUM", {"*": "safe"}),
    ("REINDEX TABLE t", {PG: "locking", LITE: "safe", MY: "unknown", GENERIC: "unknown"}),
    # the parser cannot read these: unknown with its message, never silently safe
    ("SELEC 1", {"*": "unknown"}),
    ("CREATE TABLE ((", {"*": "unknown"}),
    ("CLUSTER t", {"*": "unknown"}),
]


def _level(statement: str, dialect: str | None) -> str:
    found = [Finding(RiskLevel(f.level), f.reason) for f in analyse([statement], dialect)]
    return aggregate(found)[0].value


@pytest.mark.parametrize("dialect", ALL, ids=lambda d: d or "generic")
@pytest.mark.parametrize(("statement", "levels"), SQL_TABLE, ids=[s for s, _ in SQL_TABLE])
def test_sql_statement_levels(statement: str, levels: dict[str | None, str], dialect: str | None) -> None:
    assert _level(statement, dialect) == levels.get(dialect, levels.get("*"))


def test_unreadable_statement_reason_carries_the_parser_message() -> None:
    (finding,) = analyse(["SELEC 1"], PG)
    assert finding.level == "unknown"
    assert "SELEC 1" in finding.reason and "cannot read it" in finding.reason and "Unexpected token" in finding.reason


def test_reasons_name_the_statement_and_probe_counts_what_it_touches() -> None:
    (drop,) = analyse(["ALTER TABLE users DROP COLUMN name"], PG)
    assert drop.reason.startswith("ALTER TABLE users DROP COLUMN name:")
    assert (
        drop.probe == "SELECT COUNT(name) FROM users" and drop.describe(23) == "column users.name: 23 non-null values"
    )
    (delete,) = analyse(["DELETE FROM orders WHERE status = 'old'"], MY)
    assert delete.probe == "SELECT COUNT(*) FROM orders WHERE status = 'old'"
    assert delete.describe(1) == "table orders: 1 row matches the WHERE"


def test_index_and_not_null_on_a_table_created_in_the_same_unit_lock_nothing() -> None:
    statements = ["CREATE TABLE n (a INT)", "CREATE INDEX i ON n (a)", "ALTER TABLE n ADD COLUMN b INT NOT NULL"]
    assert analyse(statements, PG) == []


def test_jinja_is_read_as_a_placeholder_and_not_counted() -> None:
    (finding,) = analyse(["DELETE FROM t WHERE day = '{{ ds }}'"], PG)
    assert finding.level == "rewrite" and finding.probe is None  # plan counts the rendered statement
    (templated,) = analyse(["DELETE FROM t WHERE id = {{ params.id }}"], PG)
    assert templated.level == "rewrite" and templated.probe is None  # nothing to count before rendering
    (table,) = analyse(["DROP TABLE {{ params.table }}"], LITE)
    assert table.level == "destructive" and table.probe is None


# -- template operations --------------------------------------------------------------------------

OPS: list[tuple[str, dict[str, object], str]] = [
    ("mongo.create_collection", {"collection": "c"}, "safe"),
    ("mongo.drop_collection", {"collection": "c"}, "destructive"),
    ("mongo.rename_collection", {"collection": "c", "to": "d"}, "destructive"),
    ("mongo.modify_collection", {"collection": "c", "validator": {}}, "locking"),
    ("mongo.create_index", {"collection": "c", "keys": {"a": 1}}, "safe"),
    ("mongo.drop_index", {"collection": "c", "name": "a_1"}, "destructive"),
    ("mongo.insert", {"collection": "c", "documents": [{}]}, "safe"),
    ("mongo.update", {"collection": "c", "filter": {"a": 1}, "update": {"$set": {"b": 1}}}, "rewrite"),
    ("mongo.update", {"collection": "c", "filter": {}, "update": {"$set": {"b": 1}}, "many": True}, "rewrite"),
    ("mongo.delete", {"collection": "c", "filter": {"a": 1}, "many": True}, "rewrite"),
    ("mongo.delete", {"collection": "c", "filter": {}, "many": True}, "destructive"),
    ("mongo.create_view", {"view": "v", "view_on": "c", "pipeline": []}, "safe"),
    ("mongo.drop_view", {"view": "v"}, "destructive"),
    ("dynamodb.create_table", {"table": "t", "partition_key": {"name": "pk", "type": "S"}}, "safe"),
    ("dynamodb.delete_table", {"table": "t"}, "destructive"),
    ("dynamodb.update_table", {"table": "t", "billing_mode": "PAY_PER_REQUEST"}, "safe"),
    ("dynamodb.update_table", {"table": "t", "delete_index": "by_x"}, "destructive"),
    ("dynamodb.put_items", {"table": "t", "items": [{"pk": "a"}]}, "rewrite"),
    ("dynamodb.delete_items", {"table": "t", "keys": [{"pk": "a"}]}, "rewrite"),
    ("dynamodb.update_ttl", {"table": "t", "attribute": "exp"}, "destructive"),
    ("dynamodb.update_ttl", {"table": "t", "attribute": "exp", "enabled": False}, "safe"),
    ("s3.create_bucket", {"bucket": "b"}, "safe"),
    ("s3.delete_bucket", {"bucket": "b"}, "destructive"),
    ("s3.put_object", {"bucket": "b", "key": "k", "body": "x"}, "rewrite"),
    ("s3.delete_object", {"bucket": "b", "key": "k"}, "rewrite"),
    ("s3.put_bucket_versioning", {"bucket": "b", "status": "Enabled"}, "rewrite"),
    ("s3.put_bucket_lifecycle", {"bucket": "b", "rules": [{"ID": "tmp", "Expiration": {"Days": 1}}]}, "destructive"),
    ("s3.put_bucket_lifecycle", {"bucket": "b", "rules": [{"ID": "ia", "Transitions": []}]}, "rewrite"),
    ("s3.put_bucket_policy", {"bucket": "b", "policy": {}}, "rewrite"),
    ("s3.put_bucket_tagging", {"bucket": "b", "tags": {"a": "b"}}, "rewrite"),
    ("http.request", {"method": "GET", "endpoint": "/x"}, "safe"),
    ("http.request", {"method": "PUT", "endpoint": "/x"}, "rewrite"),
    ("http.request", {"method": "PATCH", "endpoint": "/x"}, "rewrite"),
    ("http.request", {"method": "POST", "endpoint": "/x"}, "unknown"),
    ("http.request", {"method": "DELETE", "endpoint": "/x"}, "destructive"),
]


@pytest.mark.parametrize(("template", "apply", "level"), OPS, ids=[f"{t}-{lv}" for t, _, lv in OPS])
def test_template_operation_levels(template: str, apply: dict[str, object], level: str) -> None:
    pairs = get_template(template).risk(apply)
    assert pairs, template
    assert aggregate([Finding(RiskLevel(lv), r) for lv, r in pairs])[0].value == level
    assert all(template in reason or "/x" in reason for _, reason in pairs)  # the reason names the operation


# -- units ----------------------------------------------------------------------------------------


def _unit(tmp_path: Path, *applies: dict[str, object], template: str = "sql", risk: str | None = None) -> ChangeUnit:
    return ChangeUnit(
        id="u",
        author="a",
        order=1,
        stage="main",
        source_file="0001_u.yaml",
        checksum="",
        kind="template",
        template=template,
        steps=tuple(Step(a) for a in applies),
        risk=risk,
    )


def test_unit_gets_the_highest_level_and_every_reason(tmp_path: Path) -> None:
    unit = _unit(tmp_path, {"statements": ["CREATE TABLE a (x INT)", "UPDATE b SET x = 1", "DROP TABLE c"]})
    risk = assess_unit(unit, tmp_path, dialect=LITE)
    assert risk.level is RiskLevel.DESTRUCTIVE
    assert risk.reasons == (
        "rewrite: UPDATE b SET x = 1: UPDATE without WHERE rewrites every row of b",
        "destructive: DROP TABLE c: drops table c and every row in it",
    )


def test_steps_are_named_and_a_sql_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files/x.sql").write_text("TRUNCATE TABLE t;\n", encoding="utf-8")
    unit = _unit(tmp_path, {"statements": "SELECT 1"}, {"file": "files/x.sql"})
    risk = assess_unit(unit, tmp_path, dialect=PG)
    assert risk.level is RiskLevel.DESTRUCTIVE and risk.reasons[0].startswith("destructive: steps[1]: TRUNCATE")


def test_declared_level_stands_only_where_analysis_says_unknown() -> None:
    unknown = [Finding(RiskLevel.UNKNOWN, "x: cannot read")]
    assert resolve("u", unknown, RiskLevel.REWRITE).level is RiskLevel.REWRITE
    assert resolve("u", unknown, None).level is RiskLevel.UNKNOWN
    mixed = [Finding(RiskLevel.LOCKING, "idx"), Finding(RiskLevel.UNKNOWN, "x")]
    low = resolve("u", mixed, RiskLevel.SAFE)
    assert low.level is RiskLevel.LOCKING and low.warning and "declared 'safe'" in low.warning


def test_declared_lower_than_analysis_warns_and_the_analysis_stands() -> None:
    found = [Finding(RiskLevel.DESTRUCTIVE, "DROP TABLE t: drops table t")]
    risk = resolve("drop-t", found, RiskLevel.SAFE)
    assert risk.level is RiskLevel.DESTRUCTIVE
    assert risk.warning is not None and "change 'drop-t'" in risk.warning and "declared 'safe'" in risk.warning
    assert resolve("drop-t", found, RiskLevel.DESTRUCTIVE).warning is None


def test_python_unit_is_unknown_unless_it_declares(tmp_path: Path) -> None:
    unit = ChangeUnit(id="p", author="a", order=1, stage="main", source_file="0001_p.py", checksum="", kind="python")
    assert assess_unit(unit, tmp_path).level is RiskLevel.UNKNOWN
    declared = ChangeUnit(**{**unit.__dict__, "risk": "rewrite"})
    assert assess_unit(declared, tmp_path).level is RiskLevel.REWRITE


def test_order_is_safe_rewrite_locking_unknown_destructive() -> None:
    assert sorted(RiskLevel, key=lambda lv: lv.rank) == [
        RiskLevel.SAFE,
        RiskLevel.REWRITE,
        RiskLevel.LOCKING,
        RiskLevel.UNKNOWN,
        RiskLevel.DESTRUCTIVE,
    ]
