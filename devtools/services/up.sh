#!/usr/bin/env bash
# Starts the real servers the scaled-out setup uses (MariaDB, Pulsar, Elasticsearch) on
# 127.0.0.1 with data under var/services/, and prints the settings that point the project at them.
set -euo pipefail
cd "$(dirname "$0")"
for service in ${*:-mariadb pulsar elasticsearch}; do "./$service.sh" start; done
cat <<SETTINGS
Settings for these servers:
  export DATABASE_URL=mysql://tracardi:tracardi@127.0.0.1:${MARIADB_PORT:-13306}/tracardi
  export QUEUE_BACKEND=pulsar PULSAR_SERVICE_URL=pulsar://127.0.0.1:${PULSAR_PORT:-16650} PULSAR_ADMIN_URL=http://127.0.0.1:${PULSAR_WEB_PORT:-18080}
  export STORE_BACKEND=elasticsearch ELASTICSEARCH_URL=http://127.0.0.1:${ES_PORT:-19200}
SETTINGS
