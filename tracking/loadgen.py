"""Demo traffic for /track: the payload of the reference page, sent by several threads."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests
from tqdm import tqdm


@dataclass
class LoadResult:
    events: int = 0
    requests: int = 0
    failed: int = 0  # requests refused or never answered
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    first_error: str = ""

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def demo_payload(*, source_id: str, session_id: str, events: int, queue: bool) -> dict:
    return {
        "source": {"id": source_id},
        "profile": {"id": "profile-id"},
        "session": {"id": session_id},
        "events": [
            {
                "options": {"async": True},
                "type": "page-view",
                "properties": {"id": str(i), "category": "demo"},
            }
            for i in range(events)
        ],
        "context": {"page": {"url": "https://shop.example.com/demo"}},
        "options": {"queue": queue},
    }


def send_events(
    *,
    url: str,
    source_id: str,
    count: int,
    events_per_request: int,
    queue: bool,
    concurrency: int,
    sessions: int,
    progress: bool = True,
) -> LoadResult:
    requests_total = -(-count // events_per_request)
    session_ids = [str(uuid.uuid4()) for _ in range(max(1, sessions))]
    local = threading.local()
    result = LoadResult()
    lock = threading.Lock()
    bar = tqdm(total=count, unit="ev", disable=not progress)

    def send(index: int) -> None:
        http = getattr(local, "http", None) or requests.Session()
        local.http = http
        n = min(events_per_request, count - index * events_per_request)
        payload = demo_payload(
            source_id=source_id, session_id=session_ids[index % len(session_ids)], events=n, queue=queue
        )
        try:
            response = http.post(f"{url.rstrip('/')}/track", json=payload, timeout=30)
            status, body = response.status_code, response.text
        except requests.RequestException as exc:
            status, body = "connection error", str(exc)
        with lock:
            result.requests += 1
            result.statuses[status] += 1
            if isinstance(status, int) and status < 300:
                result.events += n
            else:
                result.first_error = result.first_error or f"{status}: {body[:500]}"
                # The bar counts events sent; what was refused or never arrived shows beside it.
                result.failed += 1
                bar.set_postfix_str(f"{result.failed} requests failed", refresh=False)
            bar.update(n)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(send, range(requests_total)))
    result.seconds = time.perf_counter() - started
    bar.close()
    return result
