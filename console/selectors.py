"""What the console shows: the backlog of every topic (live counts, the sampled history,
rates, the oldest message's age) and the worker fleet (settings, processes, throughput)."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings

from queueing.broker import Broker
from queueing.health import WorkerState, listed_workers
from queueing.metrics import Point, oldest_age, point_before, rate
from queueing.models import BacklogSample, WorkerHeartbeat, WorkerSample, WorkerSettings, WorkerType
from queueing.sampling import processed_by_type, slot_of
from queueing.selectors import topic_backlog
from queueing.topics import ALL_TOPICS, DLQ_SUFFIX, NAMESPACE
from queueing.worker import get_worker_settings

CHART_SECONDS = 15 * 60
THROUGHPUT_SECONDS = 60
# The worker log page (built elsewhere); one link per process.
WORKER_LOGS_PATH = "/admin/console/logs/"


def recent_samples(*, now: float, seconds: float) -> dict[str, list[BacklogSample]]:
    rows = BacklogSample.objects.filter(slot__gte=slot_of(now - seconds)).order_by("slot")
    by_topic: dict[str, list[BacklogSample]] = defaultdict(list)
    for row in rows:
        by_topic[row.topic].append(row)
    return by_topic


def topic_rates(samples: list[BacklogSample]) -> tuple[float | None, float | None]:
    """(in, out) messages/s: the broker's own rates if it gives them (Pulsar), else the
    counters of the last two samples (database broker)."""
    if not samples:
        return None, None
    last = samples[-1]
    if last.rate_in is not None or last.rate_out is not None:
        return last.rate_in, last.rate_out
    if len(samples) < 2:
        return None, None
    prev = samples[-2]

    def between(field: str) -> float | None:
        a, b = getattr(prev, field), getattr(last, field)
        if a is None or b is None:
            return None
        return rate(Point(prev.taken_at, a), Point(last.taken_at, b))

    return between("published"), between("acknowledged")


def topic_status(*, broker: Broker, name: str, samples: list[BacklogSample], now: float) -> dict[str, Any]:
    backlog = topic_backlog(broker=broker, topic=ALL_TOPICS[name])
    rate_in, rate_out = topic_rates(samples)
    last = samples[-1] if samples else None
    return {
        "namespace": NAMESPACE,
        "topic": name,
        **backlog,
        "dead_letter": name.endswith(DLQ_SUFFIX),
        "rate_in": rate_in,
        "rate_out": rate_out,
        "oldest_age_seconds": oldest_age(last.oldest_at if last else None, now=now, total=backlog["total"]),
        # False: the broker cannot tell (Pulsar without the earliest-time stat).
        "oldest_age_available": bool(last and last.oldest_known) or backlog["total"] == 0,
        "history": [[s.taken_at, s.total] for s in samples],
    }


def log_url(worker_type: str, pid: int) -> str:
    return f"{WORKER_LOGS_PATH}?{urlencode({'worker_type': worker_type, 'pid': pid})}"


def iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def worker_rows() -> list[dict[str, Any]]:
    return [
        {
            "type": w.worker_type,
            "host": w.host,
            "pid": w.pid,
            "started": w.started_at.isoformat(),
            "last_seen": w.last_seen.isoformat(),
            "last_batch": iso(w.last_batch_at),
            "processed": w.processed,
            "state": health.state.value,  # running, silent or hung (see queueing/health.py)
            "alive": health.state is WorkerState.RUNNING,
            "log_url": log_url(w.worker_type, w.pid),
        }
        for w, health in listed_workers()
    ]


def throughput(*, now: float) -> dict[str, float | None]:
    """Messages/s of each worker type over the last minute, from the sampled sum of its
    heartbeats' `processed` and the sum now."""
    points: dict[str, list[Point]] = defaultdict(list)
    rows = WorkerSample.objects.filter(slot__gte=slot_of(now - 2 * THROUGHPUT_SECONDS)).order_by("slot")
    for worker_type, taken_at, processed in rows.values_list("worker_type", "taken_at", "processed"):
        points[worker_type].append(Point(taken_at, processed))
    live = processed_by_type()
    return {t: rate(point_before(points[t], now - THROUGHPUT_SECONDS), Point(now, live[t])) for t in WorkerType.values}


def last_batch_at(worker_type: str) -> datetime | None:
    """Of any process of the type, stopped ones included: "the last batch was an hour ago"."""
    rows = WorkerHeartbeat.objects.filter(worker_type=worker_type, last_batch_at__isnull=False)
    return rows.order_by("-last_batch_at").values_list("last_batch_at", flat=True).first()


def fleet(*, workers: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    rates = throughput(now=now)
    rows = []
    for worker_type in WorkerType.values:
        config: WorkerSettings = get_worker_settings(worker_type)
        processes = [w for w in workers if w["type"] == worker_type]
        rows.append(
            {
                "type": worker_type,
                "enabled": config.enabled,
                "replicas": config.replicas,
                "desired": config.replicas if config.enabled else 0,
                "running": sum(1 for w in processes if w["state"] != WorkerState.HUNG),
                "logging_level": config.logging_level,
                "messages_per_second": rates[worker_type],
                "last_batch": iso(last_batch_at(worker_type)),
            }
        )
    return rows


def queue_status(*, broker: Broker, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    samples = recent_samples(now=now, seconds=CHART_SECONDS)
    workers = worker_rows()
    return {
        "now": now,
        "chart_seconds": CHART_SECONDS,
        "sample_seconds": settings.BACKLOG_SAMPLE_SECONDS,
        "topics": [
            topic_status(broker=broker, name=name, samples=samples.get(name, []), now=now) for name in ALL_TOPICS
        ],
        "workers": workers,
        "fleet": fleet(workers=workers, now=now),
    }
