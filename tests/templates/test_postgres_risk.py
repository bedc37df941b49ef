"""Risk, impact and checks on a real PostgreSQL target (its fixture comes with the PostgreSQL target work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider import commands
from tests.conftest import sql_unit, write_tree

pg = pytest.importorskip("tests.fixtures.postgres_server", reason="the PostgreSQL fixture is not on this branch yet")
postgres_server = pg.postgres_server
postgres_db = pg.postgres_db

PIPELINE = "targets:\n  wh: {conn_id: pg_wh}\ndefault_target: wh\n"


@pytest.fixture
def warehouse(postgres_server: object, postgres_db: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    name, uri = postgres_db
    monkeypatch.setenv("AIRFLOW_CONN_PG_WH", uri)
    conn = postgres_server.connect(name)  # type: ignore[attr-defined]
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE orders (id INT, status TEXT, note TEXT)")
        cur.execute(
            "INSERT INTO orders SELECT n, CASE WHEN n % 4 = 0 THEN 'old' ELSE 'new' END, 'x' FROM generate_series(1, 40) n"
        )
    conn.close()
    return name


def test_postgres_levels_come_from_its_dialect_and_impact_counts_real_rows(tmp_path: Path, warehouse: str) -> None:
    pipe = write_tree(
        tmp_path / "pg",
        {
            "pipeline.yaml": PIPELINE,
            "0001_idx.yaml": sql_unit("idx", "CREATE INDEX ix_status ON orders (status)"),
            "0002_purge.yaml": sql_unit("purge", "DELETE FROM orders WHERE status = 'old'"),
            "0003_note.yaml": sql_unit("note", "ALTER TABLE orders DROP COLUMN note"),
        },
    )
    changes = {c["id"]: (c["risk"], c["impact"]) for c in commands.plan(pipe)["changes"]}
    assert changes == {
        "idx": ("locking", None),  # CREATE INDEX without CONCURRENTLY on an existing PostgreSQL table
        "purge": ("rewrite", "table orders: 10 rows match the WHERE"),
        "note": ("destructive", "column orders.note: 40 non-null values"),
    }


def test_postgres_impact_is_cut_off_by_statement_timeout(tmp_path: Path, warehouse: str) -> None:
    from flamingock_provider.core import preview
    from flamingock_provider.core.loader import load_pipeline
    from flamingock_provider.targets import open_target

    slow = sql_unit("slow", "DELETE FROM orders WHERE pg_sleep(1) IS NOT NULL")
    pipe = write_tree(tmp_path / "pg", {"pipeline.yaml": PIPELINE, "0001_slow.yaml": slow})
    pipeline = load_pipeline(pipe)
    # unbounded, the count would answer 40 after 40 s; statement_timeout cancels it: no impact
    assert preview.impact(pipeline, pipeline.units[0], open_target, None, timeout=0.5) is None


def test_a_hanging_postgres_check_is_cut_off(tmp_path: Path, warehouse: str) -> None:
    unit = sql_unit("purge", "DELETE FROM orders WHERE status = 'old'") + (
        'checks:\n  - sql: "SELECT count(*) FROM orders WHERE pg_sleep(60) IS NOT NULL"\n'
        "    expect: 0\n    timeout_seconds: 0.5\n"
    )
    pipe = write_tree(tmp_path / "pg", {"pipeline.yaml": PIPELINE, "0001_purge.yaml": unit})
    result = commands.apply(pipe)
    assert result["failed"]["id"] == "purge" and result["checks"] == {"purge": "error"}
    assert "canceling statement" in result["failed"]["error"] or "0.5 s" in result["failed"]["error"]
