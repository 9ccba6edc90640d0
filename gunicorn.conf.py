"""gunicorn settings read from the working directory (gunicorn loads ./gunicorn.conf.py by
default): the worker model and the Prometheus multiprocess hooks; flags on the command
line still apply."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracardi_site.settings")

# Threads: a /track request spends much of its time waiting for the queue to confirm (a
# log flush on SQLite, a round trip on Pulsar). Threads of one process wait side by side,
# and on the database broker their publishes share one commit (queueing/group_commit.py);
# bench/api_ratio.py measured 0.13 -> 0.45 of the bare endpoint for queue mode with 10
# events against sync workers. 6 rather than 4: more requests share each commit and its
# flush; against 4 (4 alternating rounds) /track took 15-26 % more requests/s with 10
# events and 5-20 % more with 1, at less CPU per request, and the bare endpoint the same;
# at 8 the bare endpoint lost about 20 %. WEB_CONCURRENCY (processes) is read by gunicorn.
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "6"))
# gunicorn's control interface (gunicornc) is not used; its socket is one fixed path per
# user, which every gunicorn on the host (tests, benchmarks, replicas) would share.
control_socket_disable = True


def on_starting(server: object) -> None:
    """The master starts the whole set of API processes: their metric files start empty, and
    the workers it forks inherit PROMETHEUS_MULTIPROC_DIR=<METRICS_DIR>/api-<master pid>."""
    from tracardi_site.observability import own_metrics_dir

    own_metrics_dir("api")


def child_exit(server: object, worker: object) -> None:
    """A worker that exited: its live gauges must no longer count (its counters still do)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
