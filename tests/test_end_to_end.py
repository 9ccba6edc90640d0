"""The whole pipeline: gunicorn, worker processes, the database broker and store on one test database."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from queueing.broker import OutgoingMessage, get_broker
from queueing.models import QueueMessage
from queueing.topics import FUNCTIONS
from storage.store import get_store
from storage.workers.background import BackgroundWorker
from tests.helpers import payload, wait_for
from tests.support.processes import start_api
from tests.support.scenarios import (
    answers_503_while_the_broker_is_locked,
    backlog_total,
    reference_payload_flows_through_the_workers,
)
from tracking.accept import COLLECTOR_DISABLED_WARNING
from tracking.models import SessionIdentity

pytestmark = pytest.mark.django_db(transaction=True)


def test_reference_payload_through_collector_and_background_workers(live_api, spawn, make_source, worker_settings):
    reference_payload_flows_through_the_workers(live_api, spawn, make_source, worker_settings)


def test_queue_mode_with_the_collector_disabled_answers_200_with_the_warning(
    live_api, spawn, make_source, worker_settings
):
    source = make_source()
    worker_settings("collector", enabled=False)
    spawn("run_worker", "background")
    response = requests.post(f"{live_api}/track", json=payload(source.id, options={"queue": True}), timeout=10)
    assert response.status_code == 200
    assert response.json()["warnings"] == [COLLECTOR_DISABLED_WARNING]
    event_id = response.json()["events"][0]
    wait_for(lambda: get_store().get("event", event_id), timeout=20)


def test_twenty_concurrent_first_requests_of_one_session_make_one_profile(live_api, make_source):
    source = make_source()
    session = {"id": str(uuid.uuid4())}
    barrier = threading.Barrier(20)

    def first_request(_: int) -> dict:
        barrier.wait()
        return requests.post(f"{live_api}/track", json=payload(source.id, session=session), timeout=30).json()

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(first_request, range(20)))
    assert len({a["profile"]["id"] for a in answers}) == 1
    assert SessionIdentity.objects.filter(session_id=session["id"]).count() == 1


def test_200_events_of_one_profile_from_4_clients_and_2_workers_lose_no_update(
    live_api, spawn, make_source, worker_settings
):
    source = make_source()
    worker_settings("background", enabled=True, min_batch_size=5, max_time_in_buffer=0.1)
    workers = [spawn("run_worker", "background") for _ in range(2)]
    session = {"id": str(uuid.uuid4())}
    # The first request registers the session; 200 single-event requests follow from 4 clients.
    first = requests.post(f"{live_api}/track", json=payload(source.id, session=session), timeout=10).json()
    profile = first["profile"]["id"]

    def send(_: int) -> int:
        return requests.post(f"{live_api}/track", json=payload(source.id, session=session), timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(send, range(199)))
    assert statuses == [200] * 199
    store = get_store()
    wait_for(
        lambda: store.count("event", profile_id=profile, type="page-view") == 200,
        timeout=60,
        message="200 stored events",
    )
    wait_for(lambda: backlog_total() == 0, timeout=20)
    assert store.get("profile", profile)["stats"]["events"] == 200
    for worker in workers:
        assert worker.stop() == 0


@pytest.mark.parametrize("point", ["after_profiles_saved", "before_ack"])
def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(live_api, spawn, make_source, worker_settings, point):
    source = make_source()
    worker_settings("background", enabled=True, min_batch_size=1000, max_batch_size=1000, max_time_in_buffer=0.5)
    sessions = [{"id": str(uuid.uuid4())} for _ in range(10)]
    accepted = []
    for i in range(40):
        answer = requests.post(f"{live_api}/track", json=payload(source.id, session=sessions[i % 10]), timeout=10)
        assert answer.status_code == 200
        accepted.append(answer.json())
    victim = spawn("run_worker", "background", env={"FAULT_INJECT": f"{point}:30"})
    wait_for(lambda: f"pausing 30.0s at {point}" in victim.output(), timeout=30, message="the worker mid-batch")
    victim.kill()
    assert backlog_total() > 0  # the batch was written in part or whole, but not acknowledged
    successor = spawn("run_worker", "background")
    store = get_store()
    event_ids = [a["events"][0] for a in accepted]
    wait_for(lambda: backlog_total() == 0, timeout=30, message="the backlog drained by the successor")
    assert store.count("event", source_id=source.id, type="page-view") == 40
    assert store.count("event", source_id=source.id, type="session-opened") == 10  # one per session
    assert all(store.get("event", e) for e in event_ids)
    for profile_id in {a["profile"]["id"] for a in accepted}:
        assert store.get("profile", profile_id)["stats"]["events"] == 4  # applied exactly once
        assert store.get("profile", profile_id)["metadata"]["time"]["visit"]["count"] == 1
    assert successor.stop() == 0


def test_a_message_that_always_fails_ends_in_the_dead_letter_topic_and_unblocks_its_partition(
    settings, make_source, worker_settings, client
):
    settings.MAX_REDELIVERIES = 2
    settings.QUEUE_NACK_DELAY_SECONDS = 0
    worker_settings("background", min_batch_size=1, max_time_in_buffer=0)
    source = make_source()
    key = str(uuid.uuid4())
    # A job of a schema this worker cannot read, ahead of a good job on the same partition.
    get_broker().publish([OutgoingMessage(topic=FUNCTIONS, key=key, payload={"v": 99, "kind": "storage"})])
    good = client.post("/track", data=payload(source.id), content_type="application/json").json()
    worker = BackgroundWorker()
    for _ in range(10):
        worker.process_batch()
    worker.consumer.close()
    (dead,) = QueueMessage.objects.filter(topic="functions-DLQ")
    assert "unsupported storage job (v=99" in dead.error
    assert get_store().get("event", good["events"][0])
    assert backlog_total() == 0 and backlog_total(FUNCTIONS.dead_letter) == 1


@pytest.mark.skipif(connection.vendor != "sqlite", reason="locks the SQLite file to make the broker fail")
def test_track_answers_503_with_retry_after_while_the_broker_cannot_publish(process_env, make_source, tmp_path):
    """Another writer holds the database broker's lock: nothing is accepted, and the API says so."""
    source = make_source()
    server, url = start_api(env={**process_env, "DATABASE_TIMEOUT_SECONDS": "0.2"}, log=tmp_path / "api.log")
    try:
        answers_503_while_the_broker_is_locked(f"{url}/track", payload(source.id))
    finally:
        server.stop()
