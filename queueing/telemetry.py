"""Prometheus metrics of the worker loop and the broker (tracardi_site/observability.py
serves them). Recording is a counter increment: cheap enough for every batch."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from queueing.broker import ReceivedMessage, get_broker
from queueing.topics import ALL_TOPICS

logger = logging.getLogger(__name__)

BATCH_SIZE = Histogram(
    "tracardi_worker_batch_size",
    "Messages per batch a worker handled.",
    ["worker"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
BATCH_SECONDS = Histogram(
    "tracardi_worker_batch_seconds",
    "Time to handle (save, run) one batch, without waiting for it to fill.",
    ["worker"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
MESSAGES = Counter(
    "tracardi_worker_messages", "Messages settled by workers, by outcome.", ["worker", "outcome"]
)  # outcome: processed (acknowledged), failed (negatively acknowledged), dead_lettered
REDELIVERIES = Counter("tracardi_worker_redeliveries", "Messages received again after a failure.", ["worker"])
BACKLOG_FAILURES = Counter("tracardi_metrics_backlog_errors", "Scrapes that could not read the broker's backlog.")


def record_batch(
    worker: str,
    batch: Sequence[ReceivedMessage],
    failed: Sequence[ReceivedMessage],
    seconds: float,
    max_redeliveries: int,
) -> None:
    BATCH_SIZE.labels(worker).observe(len(batch))
    BATCH_SECONDS.labels(worker).observe(seconds)
    MESSAGES.labels(worker, "processed").inc(len(batch) - len(failed))
    # The brokers dead-letter a failed message that has used up its redeliveries.
    dead = sum(1 for m in failed if m.redelivery_count >= max_redeliveries)
    if failed:
        MESSAGES.labels(worker, "failed").inc(len(failed) - dead)
    if dead:
        MESSAGES.labels(worker, "dead_lettered").inc(dead)
    redelivered = sum(1 for m in batch if m.redelivery_count > 0)
    if redelivered:
        REDELIVERIES.labels(worker).inc(redelivered)


class BacklogCollector:
    """tracardi_queue_backlog{topic, partition, subscription}, read from the broker at scrape
    time, at most every `cache_seconds` (scrapers and replicas would otherwise each ask)."""

    def __init__(self, *, cache_seconds: float) -> None:
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._rows: list[tuple[str, str, str, int]] = []

    def _read(self) -> list[tuple[str, str, str, int]]:
        broker = get_broker()  # the process's shared broker: not closed here
        return [
            (name, entry.partition, entry.subscription, entry.count)
            for name, topic in ALL_TOPICS.items()
            for entry in broker.backlog(topic=topic)
        ]

    def rows(self) -> list[tuple[str, str, str, int]]:
        with self._lock:
            if time.monotonic() - self._at >= self.cache_seconds:
                try:
                    self._rows = self._read()
                except Exception:  # a scrape must still show the other metrics while the broker is down
                    logger.warning("Could not read the backlog for /metrics", exc_info=True)
                    BACKLOG_FAILURES.inc()
                    self._rows = []
                self._at = time.monotonic()
            return self._rows

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "tracardi_queue_backlog",
            "Unacknowledged messages per topic and partition (read from the broker at scrape time).",
            labels=["topic", "partition", "subscription"],
        )
        for topic, partition, subscription, count in self.rows():
            family.add_metric([topic, partition, subscription], count)
        yield family
