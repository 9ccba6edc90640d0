"""Helpers shared by the tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

REFERENCE_PAYLOAD = {
    "source": {"id": "locust-test"},
    "profile": {"id": "profile-id"},
    "session": {"id": "session-id"},
    "events": [
        {
            "options": {"async": True},
            "type": "page-view",
            "properties": {"id": "string", "category": "string"},
        }
    ],
    "context": {},
    "options": {"queue": True},
}


def wait_for(predicate: Callable[[], object], *, timeout: float, interval: float = 0.1, message: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


def payload(source_id: str, **overrides: object) -> dict:
    body = {
        "source": {"id": source_id},
        "session": {"id": str(uuid.uuid4())},
        "events": [{"type": "page-view", "properties": {"id": "p1"}}],
    }
    body.update(overrides)
    return body


def drain() -> None:
    """Runs the collector and the background worker in this process until their topics are empty."""
    from storage.workers.background import BackgroundWorker
    from tracking.workers.collector import CollectorWorker

    for worker_class in (CollectorWorker, BackgroundWorker):
        worker = worker_class()
        while worker.process_batch():
            pass
        worker.consumer.close()
