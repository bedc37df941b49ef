"""Pipeline folders of the e2e tests: SQLite units against the ``warehouse_db`` connection."""

from __future__ import annotations

from typing import Any

from tests.conftest import sql_unit


def pipeline_yaml(
    *, mode: str = "reschedule", poke: float = 1, on_failure: str = "rollback_failed", extra: str = ""
) -> str:
    return (
        "targets:\n  warehouse: {conn_id: warehouse_db}\n"
        f"lock: {{lease_seconds: 60, wait_timeout_seconds: 300, poke_interval_seconds: {poke}, mode: {mode}}}\n"
        f"on_failure: {on_failure}\n{extra}"
    )


def orders(table: str, **yaml: Any) -> dict[str, str]:
    """Two stages: a table and an index, then seed rows (every unit has a rollback)."""
    return {
        "pipeline.yaml": pipeline_yaml(**yaml),
        "01_schema/0001_create_orders.yaml": sql_unit(
            "create-orders", f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, total REAL)", f"DROP TABLE {table}"
        ),
        "01_schema/0002_orders_index.yaml": sql_unit(
            "orders-index", f"CREATE INDEX {table}_total ON {table} (total)", f"DROP INDEX {table}_total"
        ),
        "02_data/0003_seed_orders.yaml": sql_unit(
            "seed-orders", f"INSERT INTO {table} VALUES (1, 9.5), (2, 20.0)", f"DELETE FROM {table} WHERE id IN (1, 2)"
        ),
    }


def failing(table: str) -> dict[str, str]:
    """A stage whose second unit fails: the first is compensated (rollback_stage)."""
    return {
        "pipeline.yaml": pipeline_yaml(on_failure="rollback_stage"),
        "01_load/0001_create_table.yaml": sql_unit(
            "create-table", f"CREATE TABLE {table} (id INTEGER)", f"DROP TABLE {table}"
        ),
        "01_load/0002_broken_insert.yaml": sql_unit("broken-insert", "INSERT INTO no_such_table VALUES (1)"),
    }


def counted(table: str, units: int, **yaml: Any) -> dict[str, str]:
    """A log table, then ``units`` units that each insert their own row (counts show double applies)."""
    files = {
        "pipeline.yaml": pipeline_yaml(**yaml),
        "0001_create_log.yaml": sql_unit("create-log", f"CREATE TABLE {table} (unit TEXT)", f"DROP TABLE {table}"),
    }
    for n in range(2, units + 1):
        files[f"{n:04d}_row_{n}.yaml"] = sql_unit(
            f"row-{n}", f"INSERT INTO {table} VALUES ('row-{n}')", f"DELETE FROM {table} WHERE unit = 'row-{n}'"
        )
    return files
