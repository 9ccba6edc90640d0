"""End to end on the real stack: the API on MySQL, the Pulsar broker, the Elasticsearch store.

Run by `make test` in its second pass, with DATABASE_URL, QUEUE_BACKEND=pulsar and
STORE_BACKEND=elasticsearch pointing at the servers it started.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import requests
from django.conf import settings
from django.db import connection

from queueing.broker import OutgoingMessage, get_broker
from queueing.selectors import topic_backlog
from queueing.topics import COLLECTOR, FUNCTIONS
from storage.store import get_store
from tests.helpers import payload, wait_for
from tests.support.processes import ROOT
from tests.support.scenarios import reference_payload_flows_through_the_workers

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


def test_reference_payload_through_mysql_pulsar_and_elasticsearch(live_api, spawn, make_source, worker_settings):
    reference_payload_flows_through_the_workers(live_api, spawn, make_source, worker_settings)


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


def test_event_ids_and_retries_on_the_real_stack(live_api, spawn, make_source, worker_settings):
    """The event-id rule and the once-per-event profile operations, through the collector and
    background worker processes on Pulsar and Elasticsearch."""
    source = make_source()
    worker_settings("collector", enabled=True)
    worker_settings("background", enabled=True)
    spawn("run_worker", "collector")
    spawn("run_worker", "background")
    url = f"{live_api}/track"
    mine = payload(source.id, session={"id": "dupA"}, events=[{"id": "E1", "type": "purchase"}])
    theirs = payload(source.id, session={"id": "dupB"}, events=[{"id": "E1", "type": "refund"}])
    answers = [
        requests.post(url, json=mine | {"options": {"queue": queue}}, timeout=30).json()
        for queue in (False, True, False)
    ]
    other = requests.post(url, json=theirs, timeout=30).json()
    store = get_store()

    def drained() -> bool:
        return all(topic_backlog(broker=get_broker(), topic=t)["total"] == 0 for t in (COLLECTOR, FUNCTIONS))

    wait_for(drained, timeout=60, message="every message processed")
    store.refresh()
    assert len({a["events"][0] for a in answers}) == 1
    assert store.get("event", answers[0]["events"][0])["type"] == "purchase"
    assert store.get("event", other["events"][0])["type"] == "refund"
    assert store.count("event", source_id=source.id, type="purchase") == 1
    assert store.get("profile", answers[0]["profile"]["id"])["stats"]["events"] == 1


def test_the_example_workflow_on_the_real_stack(live_api, spawn, make_source, worker_settings, receiver):
    """Stored on Elasticsearch, triggered through Pulsar, the CRM called by the django-q2
    cluster on MySQL, the profile changed through the storage path."""
    from tests.workflows.helpers import example_to
    from workflows.definitions import import_workflow

    make_source(id="locust-test")
    worker_settings("background", enabled=True)
    worker_settings("workflow", enabled=True)
    import_workflow(example_to(receiver.url), user="test")
    for worker_type in ("background", "workflow"):
        spawn("run_worker", worker_type)
    spawn("qcluster")
    body = payload("locust-test", events=[{"type": "purchase", "properties": {"total": 150}}])
    answer = requests.post(f"{live_api}/track", json=body, timeout=30).json()
    [call] = wait_for(lambda: receiver.received, timeout=60, message="the CRM call")
    assert json.loads(call.body) == {"profile": answer["profile"]["id"], "total": 150}
    store = get_store()
    profile = wait_for(
        lambda: (p := store.get("profile", answer["profile"]["id"])) and "vip" in p["segments"] and p,
        timeout=60,
        message="the workflow's changes stored",
    )
    assert "big-spender" in profile["tags"]


def test_the_console_on_the_real_stack(admin_client, tenant):
    """The dashboard's numbers from Pulsar's stats, and the stored data pages from
    Elasticsearch."""
    from queueing.sampling import record_samples
    from queueing.topics import ALL_TOPICS
    from storage.jobs import StorageJob

    broker = get_broker()
    broker.setup()
    job = StorageJob(job_id="console-job", profile=None, session=None, events=[])
    broker.publish([OutgoingMessage(topic=FUNCTIONS, key=f"k{i}", payload=job.to_payload()) for i in range(5)])
    record_samples(broker=broker, now=1.0)
    status = wait_for(
        lambda: (
            (s := admin_client.get("/admin/console/queues/status.json").json())
            and next(t for t in s["topics"] if t["topic"] == "functions")["total"] == 5
            and s
        ),
        timeout=30,
        message="the backlog of 5 on the dashboard",
    )
    assert {t["topic"] for t in status["topics"]} == set(ALL_TOPICS)
    functions = next(t for t in status["topics"] if t["topic"] == "functions")
    assert sum(p["count"] for p in functions["backlog"]) == 5
    store = get_store()
    store.setup()  # this test's tenant: its index templates
    event = {
        "id": "console-e1", "type": "purchase", "source": {"id": "s"}, "session": {"id": "cs"},
        "profile": {"id": "cp"}, "metadata": {"time": {"insert": "2026-11-29T10:00:00+00:00"}},
    }  # fmt: skip
    store.save_events([event])
    store.refresh()
    listing = admin_client.get("/admin/console/data/events/?type=purchase").content.decode()
    assert "console-e1" in listing
