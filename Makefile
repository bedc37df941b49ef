# Two commands on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False

.PHONY: install demo test lint bench reliability clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv
	$(UV) pip install -q --python $(PY) -c constraints.txt -e '.[all,test]'
	bash scripts/system_deps.sh
	touch $@

lint: install
	$(VENV)/bin/ruff check flamingock_provider tests bench dags
	$(VENV)/bin/mypy

test: install lint
	$(VENV)/bin/pytest -q

demo: install
	bash scripts/demo.sh

bench: install
	$(PY) bench/apply_vs_alembic.py

clean:
	rm -rf $(VENV) build *.egg-info .demo
