#!/usr/bin/env bash
# The second README command: installs what the tests need, starts the real servers
# (MariaDB; Pulsar and Elasticsearch when Java and Maven are present) and runs the suite:
#   1. everything on the embedded defaults (SQLite), the contract suites against every backend;
#   2. the contract suites and the end-to-end tests with the Django database on MySQL;
#   3. the real stack end to end: MySQL, QUEUE_BACKEND=pulsar, STORE_BACKEND=elasticsearch.
# Arguments go to pytest and run pass 1 only. REQUIRE_REAL_ENGINES=1 (CI) fails instead of
# skipping when a real server cannot be started.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_BROWSER=1 ./devtools/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .

pytest_pass() {
  local code=0
  .venv/bin/python -m pytest "$@" || code=$?
  if [ "$code" -eq 5 ]; then echo "test: pytest collected no tests: $*" >&2; exit 1; fi
  [ "$code" -eq 0 ] || exit "$code"
}

started=()
stop_started() { for service in "${started[@]}"; do ./devtools/services/"$service".sh stop || true; done; }
trap stop_started EXIT
start_service() {
  if ! ./devtools/services/"$1".sh status >/dev/null 2>&1; then
    ./devtools/services/"$1".sh start
    started+=("$1")
  fi
}

real=0
if command -v java >/dev/null && command -v mvn >/dev/null; then
  start_service mariadb
  start_service pulsar
  start_service elasticsearch
  export PULSAR_SERVICE_URL=pulsar://127.0.0.1:${PULSAR_PORT:-16650}
  export PULSAR_ADMIN_URL=http://127.0.0.1:${PULSAR_WEB_PORT:-18080}
  export ELASTICSEARCH_URL=http://127.0.0.1:${ES_PORT:-19200}
  export ELASTICSEARCH_REPLICAS=0 PULSAR_TIMEOUT_SECONDS=3
  real=1
elif [ "${REQUIRE_REAL_ENGINES:-0}" = 1 ]; then
  echo "test: REQUIRE_REAL_ENGINES=1 but java or mvn is missing: cannot start Pulsar and Elasticsearch" >&2
  exit 1
else
  echo "test: java or mvn is missing: the Pulsar, Elasticsearch and MySQL tests are skipped" >&2
fi

# helm for the chart tests (tests/deploy/test_helm_chart.py): built once from the Go module proxy
# and cached in var/tools/bin (devtools/helm.sh). If the build fails, HELM names the missing binary
# and those tests fail rather than skip.
if ! HELM=$(./devtools/helm.sh build); then
  echo "test: devtools/helm.sh build failed: the chart tests will fail" >&2
  HELM=$PWD/var/tools/bin/helm
fi
export HELM

if [ $# -gt 0 ]; then
  pytest_pass "$@"
  exit 0
fi
echo "test: pass 1 of 3: embedded defaults (SQLite)"
pytest_pass --ignore=tests/real_stack
if [ "$real" = 1 ]; then
  mysql=mysql://tracardi:tracardi@127.0.0.1:${MARIADB_PORT:-13306}/tracardi
  echo "test: pass 2 of 3: the Django database on MySQL"
  DATABASE_URL=$mysql pytest_pass tests/contract tests/test_end_to_end.py tests/queueing/test_database_broker.py \
    tests/workflows/test_outbox.py tests/workflows/test_runs.py
  echo "test: pass 3 of 3: MySQL, Pulsar and Elasticsearch end to end"
  DATABASE_URL=$mysql QUEUE_BACKEND=pulsar STORE_BACKEND=elasticsearch pytest_pass tests/real_stack
fi
