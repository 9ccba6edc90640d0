#!/usr/bin/env bash
# The first README command: sets everything up, then runs the whole pipeline on the
# embedded defaults: gunicorn serving /track, the admin and the queue API, and the
# worker supervisor (collector, background and workflow workers, and the django-q2 cluster
# that sends the outbox). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./devtools/setup.sh

HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
WEB_CONCURRENCY=${WEB_CONCURRENCY:-$(( $(nproc) * 2 ))}
export WEB_CONCURRENCY

.venv/bin/python manage.py setup_demo --url "http://$HOST:$PORT"

.venv/bin/gunicorn tracardi_site.wsgi --bind "$HOST:$PORT" --access-logfile - --graceful-timeout 30 --timeout 90 &
web=$!
.venv/bin/python manage.py run_workers &
workers=$!
stop() { kill -TERM "$web" "$workers" 2>/dev/null || true; wait "$web" "$workers" 2>/dev/null || true; }
trap stop INT TERM
# Whichever stops first takes the other down: a half-running pipeline loses data quietly.
wait -n "$web" "$workers" || true
stop
