"""Samples of every topic's backlog and every worker type's processed count, stored in
BacklogSample and WorkerSample: the console's 15-minute chart and its rates.

Where samples are taken, and why there: django-q2 schedules run once a minute at best, too
coarse for a chart of a draining backlog. So `run_workers` runs a SamplerThread (every
BACKLOG_SAMPLE_SECONDS, whether or not anyone watches: the history is there when someone
opens the console after an incident), in a thread of its own so that a slow broker admin
API (Pulsar's, up to PULSAR_TIMEOUT_SECONDS per call) never delays the supervisor's restarts
and hang checks. Deployments without `run_workers` (the Helm chart runs `run_worker` as
Deployments) still get samples while the console is open: its status endpoint calls
`sample_if_due` too. Both paths meet in one rule: a sample is due when the last one is at
least 0.9 of an interval old, and (topic, slot) is unique, so several supervisors and
gunicorn workers store one sample per period between them.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections, transaction
from django.db.models import Sum

from queueing.broker import Broker, BrokerUnavailable, get_broker
from queueing.models import BacklogSample, WorkerHeartbeat, WorkerSample, WorkerType
from queueing.topics import ALL_TOPICS

logger = logging.getLogger(__name__)


def slot_of(at: float) -> int:
    return int(at // settings.BACKLOG_SAMPLE_SECONDS)


def sample_due(now: float) -> bool:
    last = BacklogSample.objects.order_by("-slot").values_list("taken_at", flat=True).first()
    return last is None or now - last >= 0.9 * settings.BACKLOG_SAMPLE_SECONDS


def processed_by_type() -> dict[str, int]:
    """Messages processed by each worker type: the sum over its heartbeat rows, old processes'
    included, so the sum only grows (until housekeeping deletes day-old rows)."""
    sums = dict(WorkerHeartbeat.objects.values_list("worker_type").annotate(total=Sum("processed")))
    return {t: int(sums.get(t) or 0) for t in WorkerType.values}


def record_samples(*, broker: Broker, now: float | None = None) -> bool:
    """Takes one sample of every topic and worker type if one is due; True if it stored one."""
    now = time.time() if now is None else now
    if not sample_due(now):
        return False
    slot = slot_of(now)
    topics = []
    for topic in ALL_TOPICS.values():
        total = sum(entry.count for entry in broker.backlog(topic=topic))
        flow = broker.flow(topic=topic)
        topics.append(
            BacklogSample(
                topic=topic.name, slot=slot, taken_at=now, total=total,
                published=flow.published, acknowledged=flow.acknowledged,
                rate_in=flow.rate_in, rate_out=flow.rate_out,
                oldest_at=flow.oldest_published_at, oldest_known=flow.oldest_known,
            )
        )  # fmt: skip
    workers = [
        WorkerSample(worker_type=t, slot=slot, taken_at=now, processed=n) for t, n in processed_by_type().items()
    ]
    oldest_kept = slot_of(now - settings.BACKLOG_SAMPLES_KEEP_SECONDS)
    with transaction.atomic():
        BacklogSample.objects.bulk_create(topics, ignore_conflicts=True)
        WorkerSample.objects.bulk_create(workers, ignore_conflicts=True)
        BacklogSample.objects.filter(slot__lt=oldest_kept).delete()
        WorkerSample.objects.filter(slot__lt=oldest_kept).delete()
    return True


def sample_if_due(*, broker: Broker) -> None:
    """For the console's status endpoint: a sample that cannot be taken now (database locked,
    broker down) is only logged; the page still shows the live backlog."""
    try:
        record_samples(broker=broker)
    except (DatabaseError, BrokerUnavailable) as exc:
        logger.warning("Could not sample the backlog: %s", exc)


class SamplerThread(threading.Thread):
    """Samples every BACKLOG_SAMPLE_SECONDS until stopped; run by `run_workers`."""

    def __init__(self) -> None:
        super().__init__(name="backlog-sampler", daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                try:
                    record_samples(broker=get_broker())
                except Exception:  # a sampler must never die: the chart would go flat silently
                    logger.exception("Could not sample the backlog; trying again")
                close_old_connections()
                self.stopped.wait(settings.BACKLOG_SAMPLE_SECONDS)
        finally:
            connections.close_all()  # this thread's own connections

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=settings.PULSAR_TIMEOUT_SECONDS * 2 + 5)
