"""Scenarios run by more than one test module (the default stack and the real stack)."""

from __future__ import annotations

import sqlite3
import uuid

import requests
from django.db import connection

from queueing.broker import get_broker
from queueing.models import QueueMessage
from queueing.selectors import topic_backlog
from queueing.topics import COLLECTOR, FUNCTIONS, Topic
from storage.store import get_store
from tests.helpers import REFERENCE_PAYLOAD, wait_for


def backlog_total(topic: Topic = FUNCTIONS) -> int:
    return topic_backlog(broker=get_broker(), topic=topic)["total"]


def reference_payload_flows_through_the_workers(live_api: str, spawn, make_source, worker_settings) -> None:
    """The reference page's payload, queued, through collector and background worker processes,
    ends as profile, session and events in the store, with the backlog back to 0."""
    make_source(id="locust-test")
    worker_settings("collector", enabled=True)
    worker_settings("background", enabled=True)
    collector = spawn("run_worker", "collector")
    background = spawn("run_worker", "background")
    body = {**REFERENCE_PAYLOAD, "session": {"id": str(uuid.uuid4())}}
    response = requests.post(f"{live_api}/track", json=body, timeout=30)
    assert response.status_code == 201, response.text
    answer = response.json()
    store = get_store()

    def stored() -> bool:
        store.refresh()
        return store.get("event", answer["events"][0]) is not None

    wait_for(stored, timeout=60, interval=0.2, message="the event in the store")
    assert store.get("profile", answer["profile"]["id"])["stats"]["events"] == 1
    assert store.get("session", body["session"]["id"])["profile"] == answer["profile"]
    event = store.get("event", answer["events"][0])
    assert event["type"] == "page-view" and event["properties"] == {"id": "string", "category": "string"}
    wait_for(lambda: backlog_total(FUNCTIONS) == 0 and backlog_total(COLLECTOR) == 0, timeout=30)
    assert collector.stop() == 0 and background.stop() == 0
    assert "Events: Saved 4, Errors=0, ErrorIds=[]" in background.output()  # page-view and 3 system events
    assert "Profiles: Saved 1, Errors=0, ErrorIds=[], Time=" in background.output()


def answers_503_while_the_broker_is_locked(url: str, body: object) -> None:
    """Another writer holds the SQLite database (so the database broker's lock): a POST of
    `body` to `url` (an API started with a short DATABASE_TIMEOUT_SECONDS) is refused with
    503 and Retry-After, nothing is queued, and the same POST succeeds once the lock is gone."""
    before = QueueMessage.objects.count()
    lock = sqlite3.connect(connection.settings_dict["NAME"], timeout=5)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        response = requests.post(url, json=body, timeout=10)
    finally:
        lock.rollback()
        lock.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"detail": "The event queue is unavailable; nothing was accepted. Retry later."}
    assert QueueMessage.objects.count() == before
    # Once the lock is gone: the API's own writers (its log shipping, after the 503's error
    # log) may still hold the database for more than its short timeout, so a retry may be due.
    wait_for(
        lambda: requests.post(url, json=body, timeout=10).status_code == 200,
        timeout=30,
        interval=0.5,
        message="the POST accepted once the lock is gone",
    )
