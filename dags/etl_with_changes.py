"""An Airflow ETL DAG that applies its warehouse changes first: build_task_group before the ETL task.

The group takes the warehouse pipeline's lease, applies what is pending (nothing, when the
``flamingock_warehouse`` DAG already did) and releases the lease; the report runs only after a
clean apply. The same lease keeps this DAG and ``flamingock_warehouse`` from changing the warehouse
at the same time.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task

from flamingock_provider import build_task_group

with DAG(
    dag_id="etl_with_changes",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example", "flamingock"],
    doc_md=__doc__,
):
    changes = build_task_group(Path(__file__).parent / "changes" / "warehouse", group_id="warehouse_changes")

    @task
    def revenue_by_currency() -> dict[str, int]:
        """Sum order totals per currency (needs the backfilled ``orders.total_cents``)."""
        import sqlite3

        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection("warehouse_db")
        with sqlite3.connect(conn.host or conn.schema) as db:
            rows = db.execute("SELECT currency, SUM(total_cents) FROM orders GROUP BY currency").fetchall()
        return {currency: int(total or 0) for currency, total in rows}

    changes >> revenue_by_currency()
