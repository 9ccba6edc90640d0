#!/usr/bin/env bash
# The first README command: sets everything up, then runs the whole pipeline on the
# embedded defaults under the project's one supervisor, `manage.py run_workers`
# (queueing/supervisor.py): gunicorn serving /track, the admin and the queue API
# (--web), the collector, background and workflow workers, and the django-q2 cluster
# that sends the outbox. It restarts what crashes; Ctrl-C (or SIGTERM) stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./devtools/setup.sh

HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
WEB_CONCURRENCY=${WEB_CONCURRENCY:-$(( $(nproc) * 2 ))}
export WEB_CONCURRENCY

.venv/bin/python manage.py setup_demo --url "http://$HOST:$PORT"

exec .venv/bin/python manage.py run_workers --web "$HOST:$PORT"
