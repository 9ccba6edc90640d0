"""/metrics scraped from a live gunicorn (2 workers) and a worker process: the counters of
every process add up (Prometheus multiprocess mode)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 40


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "no-cache" in response.headers["Cache-Control"]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def post_event(url: str, source_id: str, n: int) -> int:
    body = {"source": {"id": source_id}, "session": {"id": f"s-{n}"}, "events": [{"type": "page-view"}]}
    return requests.post(f"{url}/track", json=body, timeout=30).status_code  # a new connection each time


def test_counters_add_up_across_gunicorn_workers_and_worker_processes(
    live_api: str, make_source, worker_settings, spawn
) -> None:
    source = make_source()
    worker_settings("background")
    before = scrape(live_api)
    # Concurrent requests, so both gunicorn workers (one request at a time each) serve some.
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda n: post_event(live_api, source.id, n), range(REQUESTS)))
    assert statuses == [200] * REQUESTS

    after = scrape(live_api)
    assert value(after, "tracardi_track_requests_total", status="200", source=source.id) == REQUESTS
    assert value(after, "tracardi_track_seconds_count") - value(before, "tracardi_track_seconds_count") >= REQUESTS
    assert value(after, "tracardi_publish_seconds_count") - value(before, "tracardi_publish_seconds_count") >= REQUESTS
    api_files = list(Path(settings.METRICS_DIR).glob("api-*/counter_*.db"))
    assert len(api_files) >= 2, f"both gunicorn workers count: {api_files}"
    backlog = [ls for (n, ls) in after if n == "tracardi_queue_backlog"]
    assert {dict(ls)["topic"] for ls in backlog} >= {"functions", "collector", "workflow", "functions-DLQ"}

    processed_before = value(before, "tracardi_worker_messages_total", worker="background", outcome="processed")
    spawn("run_worker", "background")

    batches_before = value(before, "tracardi_worker_batch_size_count", worker="background")

    def stored_all() -> dict | None:
        # Both, in one scrape: the files of the worker's counters and histograms are separate
        # (and CI once saw the messages counted before the batch).
        now = scrape(live_api)
        done = value(now, "tracardi_worker_messages_total", worker="background", outcome="processed")
        batches = value(now, "tracardi_worker_batch_size_count", worker="background")
        return now if done - processed_before >= REQUESTS and batches > batches_before else None

    final = wait_for(stored_all, timeout=60, interval=0.5, message="the background worker's counters")
    assert value(final, "tracardi_worker_batch_seconds_count", worker="background") > 0


def test_a_bad_source_is_counted_without_its_id(live_api: str) -> None:
    before = scrape(live_api)
    assert post_event(live_api, "no-such-source-x", 0) == 401
    after = scrape(live_api)
    assert value(after, "tracardi_track_requests_total", status="401", source="-") == (
        value(before, "tracardi_track_requests_total", status="401", source="-") + 1
    )
    assert not any(dict(ls).get("source") == "no-such-source-x" for (_, ls) in after)


def test_run_workers_empties_its_metrics_directory_and_its_workers_write_there(spawn, worker_settings) -> None:
    worker_settings("background", enabled=True)
    worker_settings("collector", enabled=False)
    worker_settings("workflow", enabled=False)
    stale_dir = Path(settings.METRICS_DIR) / "workers-999999999"  # a run_workers that is gone
    stale_dir.mkdir(parents=True, exist_ok=True)
    stale = stale_dir / "counter_999999999.db"
    stale.write_bytes(b"left by an earlier run")
    supervisor = spawn("run_workers", env={"OUTBOX_RUN_CLUSTER": "false"})
    workers_dir = Path(settings.METRICS_DIR) / f"workers-{supervisor.pid}"
    wait_for(lambda: not stale.exists(), timeout=30, message="run_workers removed a gone run_workers' files")
    wait_for(
        lambda: [f for f in workers_dir.glob("counter_*.db") if f.stem != f"counter_{supervisor.pid}"],
        timeout=60,
        message=f"a worker wrote to {workers_dir}",
    )
    assert supervisor.popen.poll() is None, supervisor.output()
