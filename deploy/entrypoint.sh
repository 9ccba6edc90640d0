#!/usr/bin/env bash
# The one entry point of the image, the Helm chart and deploy/compose.yaml (README.md: Kubernetes):
#   entrypoint.sh api              gunicorn serving /track, the API, the admin (static files by whitenoise)
#   entrypoint.sh worker <type>    manage.py run_worker <collector|background|workflow>
#   entrypoint.sh outbox           manage.py qcluster (django-q2: sends the outbox)
#   entrypoint.sh migrate          migrate, setup_queue, setup_storage, apply_helm_values ($TRACARDI_HELM_VALUES)
#   entrypoint.sh manage <args>    any manage.py command
# Settings come from the environment (README.md: Configuration). PYTHON picks the interpreter
# (default: python3 on PATH, the image's; tests use the project's .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

usage() { echo "usage: $0 api | worker <collector|background|workflow> | outbox | migrate | manage <args...>" >&2; exit 2; }

command=${1:-}
[ -n "$command" ] || usage
shift
case "$command" in
  api)
    exec "$PYTHON" -m gunicorn tracardi_site.wsgi \
      --bind "${HOST:-0.0.0.0}:${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-2}" \
      --log-level "${LOG_LEVEL:-info}" \
      --access-logfile - --graceful-timeout 30 --timeout 90
    ;;
  worker)
    [ $# -eq 1 ] || usage
    exec "$PYTHON" manage.py run_worker "$1"
    ;;
  outbox)
    exec "$PYTHON" manage.py qcluster
    ;;
  migrate)
    "$PYTHON" manage.py migrate --noinput
    "$PYTHON" manage.py setup_queue
    "$PYTHON" manage.py setup_storage
    exec "$PYTHON" manage.py apply_helm_values
    ;;
  manage)
    exec "$PYTHON" manage.py "$@"
    ;;
  *)
    usage
    ;;
esac
