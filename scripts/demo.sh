#!/usr/bin/env bash
# `make demo`: run the example warehouse pipeline through a real Airflow 3 (local AIRFLOW_HOME,
# SQLite metadata DB, dag.test) and print its audit trail. Everything lives in .demo/ (wiped first).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VENV=${VENV:-.venv}
PY="$REPO/$VENV/bin/python"
FLAMINGOCK="$REPO/$VENV/bin/flamingock"
DEMO="$REPO/.demo"

rm -rf "$DEMO"
mkdir -p "$DEMO/dags"
cp dags/flamingock_dags.py dags/etl_with_changes.py dags/.airflowignore "$DEMO/dags/"
cp -r dags/changes "$DEMO/dags/changes"

export AIRFLOW_HOME="$DEMO/airflow_home"
export AIRFLOW__CORE__DAGS_FOLDER="$DEMO/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__LOGGING__LOGGING_LEVEL=${AIRFLOW__LOGGING__LOGGING_LEVEL:-WARNING}
export FLAMINGOCK_HOME="$DEMO/flamingock"
export AIRFLOW_CONN_WAREHOUSE_DB="sqlite:///$DEMO/warehouse.db"

echo "== airflow db migrate (AIRFLOW_HOME=.demo/airflow_home)"
"$PY" -m airflow db migrate >"$DEMO/db-migrate.log" 2>&1 || { tail -20 "$DEMO/db-migrate.log"; exit 1; }

echo "== running the DAGs with dag.test (logs: .demo/dag-test.log)"
"$PY" - 3>&1 >"$DEMO/dag-test.log" 2>&1 <<'PY' || { tail -40 "$DEMO/dag-test.log"; exit 1; }
import json
import os
import sys

from airflow.dag_processing.dagbag import DagBag
from airflow.models import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

out = os.fdopen(3, "w")
bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
if bag.import_errors:
    print(f"import errors: {bag.import_errors}", file=out)
    sys.exit(1)

RUNS = [
    ("flamingock_warehouse", {"action": "apply", "undo_to": None}, "apply every pending change"),
    ("flamingock_warehouse", {"action": "apply", "undo_to": None}, "apply again: nothing to do, every unit skipped"),
    ("flamingock_warehouse", {"action": "plan", "undo_to": None}, "plan: no lock taken, nothing changed"),
    ("etl_with_changes", {}, "an ETL DAG whose changes run first (build_task_group)"),
]
for dag_id, conf, what in RUNS:
    dr = bag.dags[dag_id].test(run_conf=conf)
    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dr.run_id)
        states = {ti.task_id: str(ti.state) for ti in tis}
        report = session.query(XComModel.value).filter(
            XComModel.dag_id == dag_id, XComModel.run_id == dr.run_id, XComModel.task_id == "revenue_by_currency",
            XComModel.key == "return_value",
        ).scalar()
    print(f"\n-- {dag_id} {json.dumps(conf)}: {what}\n   run state: {dr.state}", file=out)
    for task_id in sorted(states, key=lambda t: list(bag.dags[dag_id].task_dict).index(t)):
        print(f"   {task_id:<52} {states[task_id]}", file=out)
    if report is not None:
        print(f"   revenue_by_currency returned {report}", file=out)
    if str(dr.state) != "success":
        sys.exit(1)
PY

echo
echo "== flamingock history dags/changes/warehouse   (FLAMINGOCK_HOME=.demo/flamingock)"
"$FLAMINGOCK" history dags/changes/warehouse
echo
echo "== flamingock status dags/changes/warehouse"
"$FLAMINGOCK" status dags/changes/warehouse
