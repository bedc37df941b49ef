"""Pipeline folders and DAG files of the Celery scenarios (tests/e2e/test_celery.py).

They are all written into the DAGs folder before the deployment starts, so the DAG processor parses
them once at start-up instead of once per test. Targets: the PostgreSQL database ``warehouse_pg``
and the MongoDB database ``mongo_catalog``; audit stores: ``flamingock_pg`` (PostgreSQL) and
``mongo_audit`` (MongoDB).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import sql_unit

PARALLEL = "celery_parallel"  # two independent stages (depends_on: [])
SHARED = "celery_shared"  # one pipeline inside two ETL DAGs (build_task_group), under dags/etl_changes/
DEFERRED = "celery_deferred"  # lock.mode: deferrable
EMBEDDED = "celery_embedded"  # no audit.conn_id: the embedded store
KILLED = "celery_killed"  # a non-transactional Python unit that hangs while a file exists
SIDES = ("left", "right")
ETL_DAG_IDS = (f"etl_{SHARED}_a", f"etl_{SHARED}_b")
SLOW_UNIT_ID = "slow-touch"

ETL_DAGS = """\
from pathlib import Path

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from flamingock_provider import build_task_group

for etl in {dag_ids!r}:
    with DAG(etl, schedule=None, catchup=False, tags=["etl"]) as dag:
        changes = build_task_group(Path(__file__).parent / "etl_changes" / {name!r}, group_id="changes")
        changes >> EmptyOperator(task_id="load")
    globals()[etl] = dag
"""

TOUCH_UNIT = """\
import time
from pathlib import Path

ID = {unit_id!r}
AUTHOR = "tester"
TRANSACTIONAL = False
RECOVERY = "always_retry"
HANG = Path({hang!r})


def apply(ctx):
    ctx.target["touches"].update_one({{"_id": ID}}, {{"$inc": {{"n": 1}}}}, upsert=True)
    while HANG.exists():  # the test SIGKILLs this worker here
        time.sleep(0.2)
"""


def header(
    audit: str | None, *, target: str = "warehouse_pg", lease: float = 30, mode: str = "reschedule", poke: float = 0.5
) -> str:
    """A pipeline.yaml: ``audit`` connection (None: the embedded store), one target, a short poke interval."""
    kind = "catalog" if target.startswith("mongo") else "warehouse"
    lock = f"lease_seconds: {lease}, wait_timeout_seconds: 180, poke_interval_seconds: {poke}, mode: {mode}"
    audit_yaml = f"audit: {{conn_id: {audit}}}\n" if audit else ""
    return f"{audit_yaml}targets:\n  {kind}: {{conn_id: {target}}}\ndefault_target: {kind}\nlock: {{{lock}}}\n"


def log_table(unit_id: str, table: str) -> str:
    return sql_unit(unit_id, f"CREATE TABLE {table} (unit TEXT)", f"DROP TABLE {table}")


def row_unit(unit_id: str, table: str) -> str:
    """A non-idempotent unit: it inserts its own row, so a second application shows as a duplicate."""
    insert, delete = f"INSERT INTO {table} VALUES ('{unit_id}')", f"DELETE FROM {table} WHERE unit = '{unit_id}'"
    return sql_unit(unit_id, insert, delete)


def parallel_stages() -> dict[str, str]:
    """Two stages that depend on nothing: each creates its table and inserts a row, side by side."""
    files = {"pipeline.yaml": header("flamingock_pg")}
    for n, side in enumerate(SIDES, start=1):
        table = f"{PARALLEL}_{side}"
        files[f"0{n}_{side}/stage.yaml"] = "depends_on: []\n"
        files[f"0{n}_{side}/000{2 * n - 1}_create.yaml"] = log_table(f"{side}-table", table)
        files[f"0{n}_{side}/000{2 * n}_row.yaml"] = row_unit(f"{side}-row", table)
    return files


def shared_pipeline() -> dict[str, str]:
    table = f"{SHARED}_log"
    return {
        # The waiting run re-pokes every 5 s (each poke is a task try on a worker): the holder keeps the slots.
        "pipeline.yaml": header("mongo_audit", poke=5),
        "0001_create.yaml": log_table("create-log", table),
        "0002_row.yaml": row_unit("row-2", table),
    }


def deferred_pipeline() -> dict[str, str]:
    table = f"{DEFERRED}_log"
    return {
        "pipeline.yaml": header("flamingock_pg", mode="deferrable"),
        "0001_create.yaml": log_table("create-log", table),
    }


def embedded_pipeline() -> dict[str, str]:
    return {"pipeline.yaml": header(None), "0001_create.yaml": log_table("create-x", f"{EMBEDDED}_x")}


def killed_pipeline(hang: Path) -> dict[str, str]:
    unit = TOUCH_UNIT.format(unit_id=SLOW_UNIT_ID, hang=str(hang))
    return {"pipeline.yaml": header("mongo_audit", target="mongo_catalog", lease=10), "0001_touch.py": unit}


def write_scenarios(dags: Path, hang: Path) -> None:
    """Write every scenario's pipeline folder and the ETL DAG file into the DAGs folder ``dags``."""
    folders = {
        dags / "changes" / PARALLEL: parallel_stages(),
        dags / "changes" / DEFERRED: deferred_pipeline(),
        dags / "changes" / EMBEDDED: embedded_pipeline(),
        dags / "changes" / KILLED: killed_pipeline(hang),
        dags / "etl_changes" / SHARED: shared_pipeline(),
    }
    for folder, files in folders.items():
        for rel, text in files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    (dags / f"etl_{SHARED}.py").write_text(ETL_DAGS.format(dag_ids=ETL_DAG_IDS, name=SHARED), encoding="utf-8")
