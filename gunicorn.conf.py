"""gunicorn settings read from the working directory (gunicorn loads ./gunicorn.conf.py by
default): only the Prometheus multiprocess hooks; flags on the command line still apply."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracardi_site.settings")


def on_starting(server: object) -> None:
    """The master starts the whole set of API processes: their metric files start empty, and
    the workers it forks inherit PROMETHEUS_MULTIPROC_DIR=<METRICS_DIR>/api-<master pid>."""
    from tracardi_site.observability import own_metrics_dir

    own_metrics_dir("api")


def child_exit(server: object, worker: object) -> None:
    """A worker that exited: its live gauges must no longer count (its counters still do)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
