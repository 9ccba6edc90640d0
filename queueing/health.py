"""Whether a worker process is alive, judged by its heartbeat: running, silent or hung.

A worker writes its heartbeat (WorkerHeartbeat.last_seen) every WORKER_HEARTBEAT_SECONDS,
between batches and while it waits: for a batch to fill, for a backend to come back. The
longest it is silent is one batch, which QUEUE_LEASE_SECONDS already bounds; so a worker
silent for WORKER_HANG_SECONDS (more than that lease) is stopped or stuck, and the
supervisor replaces it. Times are epoch seconds: heartbeats come from other processes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from queueing.models import WorkerHeartbeat

# Missing this many heartbeats in a row makes a worker "silent" on the console.
SILENT_AFTER_BEATS = 3
# Rows the console still lists: a worker gone longer ago than this is history.
LISTED_FOR = timedelta(hours=1)


class WorkerState(enum.StrEnum):
    STARTING = "starting"  # no heartbeat yet, within its start-up grace
    RUNNING = "running"
    SILENT = "silent"  # late, but not past the hang limit yet
    HUNG = "hung"  # past the limit: stopped, stuck or gone


@dataclass(frozen=True)
class Health:
    state: WorkerState
    silent_seconds: float


@dataclass(frozen=True)
class HangPolicy:
    heartbeat_seconds: float
    hang_seconds: float
    grace_seconds: float

    @classmethod
    def from_settings(cls) -> HangPolicy:
        return cls(
            heartbeat_seconds=settings.WORKER_HEARTBEAT_SECONDS,
            hang_seconds=settings.WORKER_HANG_SECONDS,
            grace_seconds=settings.WORKER_START_GRACE_SECONDS,
        )

    def health(self, *, started: float, last_seen: float | None, now: float) -> Health:
        """`started`: when the process was started; `last_seen`: its last heartbeat, if any."""
        if last_seen is None:
            # Start-up (imports, connecting to the broker) comes before the first heartbeat.
            silent = max(0.0, now - started)
            return Health(WorkerState.HUNG if silent > self.grace_seconds else WorkerState.STARTING, silent)
        silent = max(0.0, now - last_seen)
        if silent > self.hang_seconds:
            return Health(WorkerState.HUNG, silent)
        if silent > SILENT_AFTER_BEATS * self.heartbeat_seconds:
            return Health(WorkerState.SILENT, silent)
        return Health(WorkerState.RUNNING, silent)


def listed_workers(*, policy: HangPolicy | None = None) -> list[tuple[WorkerHeartbeat, Health]]:
    """The worker processes not stopped gracefully and seen within the hour, with their health.
    A worker that crashed or was killed stays listed as hung until then."""
    policy = policy or HangPolicy.from_settings()
    now = timezone.now()
    rows = WorkerHeartbeat.objects.filter(stopped=False, last_seen__gte=now - LISTED_FOR)
    listed = rows.order_by("worker_type", "started_at")
    at = now.timestamp()
    return [
        (row, policy.health(started=row.started_at.timestamp(), last_seen=row.last_seen.timestamp(), now=at))
        for row in listed
    ]
