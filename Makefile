# Two commands on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False

.PHONY: install demo airflow test test-fast lint verify bench reliability clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv
	# System packages first: mysqlclient compiles against libmysqlclient during the pip install.
	bash scripts/system_deps.sh
	$(UV) pip install -q --compile-bytecode --python $(PY) -c constraints.txt -e '.[all,test]'
	touch $@

lint: install
	$(VENV)/bin/ruff check flamingock_provider tests bench dags
	$(VENV)/bin/ruff format --check flamingock_provider tests bench dags
	$(VENV)/bin/mypy

# Everything: lint, the SPIN models, unit, integration, slow, e2e (real Airflow) and the reliability suite
# (reduced counts).
test: install lint verify
	$(VENV)/bin/pytest -q --durations=30

# The inner loop: everything but the e2e, reliability and slow tests (markers in pyproject.toml).
test-fast: install
	$(VENV)/bin/pytest -q -m "not e2e and not reliability and not slow"

# The lease and audit protocol, model-checked with SPIN (issue 21): the model-to-code mapping first,
# then every model configuration (verification/README.md); binaries and trails in verification/.build/.
verify:
	@command -v spin >/dev/null 2>&1 || bash scripts/system_deps.sh
	python3 verification/check_mapping.py
	bash verification/run_models.sh

demo: install
	bash scripts/demo.sh

# A local Airflow UI on the example DAGs (their targets as local servers) until Ctrl-C: prints the URLs
# and the admin password.
airflow: install
	bash scripts/airflow.sh

# Every benchmark in order (issue 9: parse, history growth, throughput; then the older ones), each
# printing its table with the machine's details. bench/parse.py runs when it exists.
bench: install
	if [ -f bench/parse.py ]; then $(PY) bench/parse.py; fi
	$(PY) bench/history_growth.py
	$(PY) bench/throughput.py
	$(PY) bench/apply_vs_alembic.py
	$(PY) bench/sql_servers.py
	$(PY) bench/mongo_overhead.py
	$(PY) bench/airflow_run_cost.py
	$(PY) bench/celery.py

# The reliability suite at full counts (issue 8): per backend 10 races of 8 runners x 50 units, 30 kills,
# frozen holders, skewed clocks, store outages; the hostile-input corpus and 1500 fuzzed pipelines.
# `make test` runs the same suite with reduced counts; bench/faults.py prints the figures.
reliability: install
	FLAMINGOCK_RELIABILITY_FULL=1 $(VENV)/bin/pytest -q tests/reliability

clean:
	rm -rf $(VENV) build *.egg-info .demo .airflow
