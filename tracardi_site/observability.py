"""Prometheus /metrics in multiprocess mode: every gunicorn worker and every worker process
writes its samples to files under METRICS_DIR (see settings), and a scrape adds them all up.

The files of each owner live in their own subdirectory (api/, workers/, standalone/), so an
owner can empty its own at start without wiping the others' counters; a scrape reads them all.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def reset_metrics_dir(path: Path) -> None:
    """Empties `path` (creating it): when the whole set of processes writing there starts,
    since a new process may reuse an old pid and its file would add up twice."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def own_metrics_dir(role: str) -> Path:
    """Makes this process (and the children it starts from now on) write to
    METRICS_DIR/<role>-<pid>, new and empty. Per master process, not per role: two gunicorns
    (or two run_workers) on one host must not empty each other's live files; the directories
    of masters that are gone are removed. Call before prometheus_client is imported in the
    processes that record."""
    base = Path(settings.METRICS_DIR)
    for old in base.glob(f"{role}-*"):
        pid = old.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = base / f"{role}-{os.getpid()}"
    reset_metrics_dir(path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


class AllOwnersCollector:
    """MultiProcessCollector over every owner's subdirectory at once."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def collect(self) -> Iterable[object]:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = glob.glob(str(self.base / "*" / "*.db"))
        return MultiProcessCollector.merge(files, accumulate=True)


def _registry() -> object:
    from prometheus_client import CollectorRegistry

    from queueing.telemetry import BacklogCollector

    registry = CollectorRegistry()
    registry.register(AllOwnersCollector(Path(settings.METRICS_DIR)))
    registry.register(BacklogCollector(cache_seconds=settings.METRICS_BACKLOG_CACHE_SECONDS))
    return registry


_REGISTRY: object | None = None


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: no auth, like /healthz; keep it off the public internet (README-ops.md)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _registry()
    return HttpResponse(generate_latest(_REGISTRY), content_type=CONTENT_TYPE_LATEST)
