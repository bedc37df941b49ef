#!/usr/bin/env bash
# `make airflow`: a local `airflow standalone` on the example DAGs with their targets, until Ctrl-C.
# Prints the Airflow URL, the Flamingock view URL and the admin password. Everything lives in .airflow/.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PY:-$PWD/$VENV/bin/python}
export PATH="$(dirname "$PY"):$PATH"  # `airflow standalone` starts `airflow` sub-commands by name
exec "$PY" scripts/local_airflow.py
