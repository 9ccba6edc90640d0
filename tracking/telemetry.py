"""Prometheus metrics of /track (tracardi_site/observability.py serves them)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter("tracardi_track_requests", "/track requests by status code and event source.", ["status", "source"])
LATENCY = Histogram(
    "tracardi_track_seconds", "/track time in the view, by status code.", ["status"], buckets=LATENCY_BUCKETS
)
PUBLISH_LATENCY = Histogram(
    "tracardi_publish_seconds", "Time for the broker to confirm a publish from the API.", buckets=LATENCY_BUCKETS
)
UNAVAILABLE = Counter("tracardi_track_unavailable", "/track answers 503: the queue did not confirm the write.")

# Only sources that exist get their own label: an unknown source id (sent by anybody) must
# not create a new time series.
UNKNOWN_SOURCE = "-"


def record_track(status: int, source_id: str | None, seconds: float) -> None:
    REQUESTS.labels(str(status), source_id or UNKNOWN_SOURCE).inc()
    LATENCY.labels(str(status)).observe(seconds)
    if status == 503:
        UNAVAILABLE.inc()


@contextmanager
def timed_publish() -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        PUBLISH_LATENCY.observe(time.perf_counter() - started)
