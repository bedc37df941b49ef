"""Risk and impact on a real MariaDB target (its fixture comes with the MySQL target work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingock_provider import commands
from tests.conftest import sql_unit, write_tree

my = pytest.importorskip("tests.fixtures.mariadb_server", reason="the MariaDB fixture is not on this branch yet")
mariadb_server = my.mariadb_server
mariadb_db = my.mariadb_db

PIPELINE = "targets:\n  wh: {conn_id: my_wh}\ndefault_target: wh\n"


def test_mysql_levels_come_from_its_dialect_and_impact_counts_real_rows(
    tmp_path: Path, mariadb_server: object, mariadb_db: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, uri = mariadb_db
    monkeypatch.setenv("AIRFLOW_CONN_MY_WH", uri)
    conn = mariadb_server.connect(name)  # type: ignore[attr-defined]
    cur = conn.cursor()
    cur.execute("CREATE TABLE orders (id INT, status VARCHAR(10))")
    cur.executemany("INSERT INTO orders VALUES (%s, %s)", [(n, "old" if n % 5 == 0 else "new") for n in range(1, 26)])
    conn.commit()
    conn.close()
    pipe = write_tree(
        tmp_path / "my",
        {
            "pipeline.yaml": PIPELINE,
            "0001_idx.yaml": sql_unit("idx", "CREATE INDEX ix_status ON orders (status)"),
            "0002_type.yaml": sql_unit("widen", "ALTER TABLE orders MODIFY COLUMN status VARCHAR(40)"),
            "0003_purge.yaml": sql_unit("purge", "DELETE FROM orders WHERE status = 'old'"),
            "0004_drop.yaml": sql_unit("drop", "DROP TABLE orders"),
        },
    )
    changes = {c["id"]: (c["risk"], c["impact"]) for c in commands.plan(pipe)["changes"]}
    assert changes == {
        "idx": ("safe", None),  # InnoDB builds a secondary index online
        "widen": ("locking", None),  # MODIFY COLUMN copies the table
        "purge": ("rewrite", "table orders: 5 rows match the WHERE"),
        "drop": ("destructive", "table orders: 25 rows"),
    }
