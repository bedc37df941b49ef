#!/usr/bin/env bash
# Install the Debian packages the test suite needs (servers it starts, tools it runs), when missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The SPIN model checker for `make verify` (verification/, issue 21).
command -v spin >/dev/null 2>&1 || need+=(spin)
# Headless browser for the Flamingock view test (Playwright drives the system chromium; it cannot download its own).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# PostgreSQL and MariaDB servers for the SQL store/target tests (started by fixtures, never as services).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server)
# mysqlclient (apache-airflow-providers-mysql) compiles against libmysqlclient: needed before `uv pip install`.
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/mysql/mysql.h ] || [ -f /usr/include/mariadb/mysql.h ] || need+=(default-libmysqlclient-dev)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
# git for the GitDagBundle the e2e Airflow reads (tests/e2e/git_bundle.py: bundle_version is its commit).
command -v git >/dev/null 2>&1 || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: missing ${need[*]}; the tests that need them are skipped" >&2
  fi
fi
