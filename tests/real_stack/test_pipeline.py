"""End to end on the real stack: the API on MySQL, the Pulsar broker, the Elasticsearch store.

Run by `make test` in its second pass, with DATABASE_URL, QUEUE_BACKEND=pulsar and
STORE_BACKEND=elasticsearch pointing at the servers it started.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
import requests
from django.conf import settings
from django.db import connection

from queueing.broker import get_broker
from queueing.services import topic_backlog
from queueing.topics import COLLECTOR, FUNCTIONS
from storage.store import get_store
from tests.conftest import ROOT
from tests.helpers import REFERENCE_PAYLOAD, let_api_caches_expire, payload, wait_for

REAL_STACK = (
    connection.vendor == "mysql" and settings.QUEUE_BACKEND == "pulsar" and settings.STORE_BACKEND == "elasticsearch"
)
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not REAL_STACK,
        reason="needs DATABASE_URL=mysql://..., QUEUE_BACKEND=pulsar, STORE_BACKEND=elasticsearch (see make test)",
    ),
]

PULSAR = str(ROOT / "devtools" / "services" / "pulsar.sh")


def backlog_total(topic) -> int:
    return topic_backlog(broker=get_broker(), topic=topic)["total"]


def test_reference_payload_through_mysql_pulsar_and_elasticsearch(live_api, spawn, make_source, worker_settings):
    make_source(id="locust-test")
    worker_settings("collector", enabled=True)
    worker_settings("background", enabled=True)
    let_api_caches_expire()
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

    wait_for(stored, timeout=60, interval=0.5, message="the event in Elasticsearch")
    assert store.get("profile", answer["profile"]["id"])["stats"]["events"] == 1
    assert store.get("session", body["session"]["id"])["profile"] == answer["profile"]
    wait_for(lambda: backlog_total(FUNCTIONS) == 0 and backlog_total(COLLECTOR) == 0, timeout=30)
    assert collector.stop() == 0 and background.stop() == 0
    assert "Events: Saved 4, Errors=0, ErrorIds=[]" in background.output()  # page-view and 3 system events


def test_track_answers_503_while_pulsar_is_down_and_accepts_again_after(live_api, make_source):
    source = make_source()
    url = f"{live_api}/track"
    assert requests.post(url, json=payload(source.id), timeout=30).status_code == 200
    subprocess.run([PULSAR, "stop"], check=True, timeout=120)
    try:
        response = requests.post(url, json=payload(source.id), timeout=60)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json()["detail"] == "The event queue is unavailable; nothing was accepted. Retry later."
    finally:
        subprocess.run([PULSAR, "start"], check=True, timeout=300)
    wait_for(
        lambda: requests.post(url, json=payload(source.id), timeout=60).status_code == 200,
        timeout=120,
        interval=1,
        message="/track accepting again once Pulsar is back",
    )
