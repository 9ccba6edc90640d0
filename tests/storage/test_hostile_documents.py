"""Hostile shapes /track accepts reach the database store's prepared writes (JSON by orjson)
and are stored; none fails the batch or reaches a 500."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from queueing.broker import get_broker
from queueing.topics import FUNCTIONS
from storage.store import get_store
from storage.workers.background import store_bulk_jobs
from tracking.models import EventSource

pytestmark = pytest.mark.django_db(transaction=True)


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    "properties",
    [
        nested(settings.TRACK_MAX_DEPTH - 4),  # as deep as the payload may go
        {"s": "x" * 200_000},
        {"n": 2**62, "f": 1e308, "u": "\u0000\ud7ff\U0010ffff"},
        {"list": [[[[1]]]] * 1000},
        {"1": 1, "k\u00fc": True},
    ],
    ids=["deep", "huge-string", "edge-numbers-and-text", "many-lists", "odd-keys"],
)
def test_a_hostile_shape_accepted_by_track_is_stored_whole(properties):
    EventSource.objects.update_or_create(id="hostile", defaults={"name": "hostile", "enabled": True})
    event = {"type": "t", "properties": properties}
    body = {"source": {"id": "hostile"}, "session": {"id": "hostile-s"}, "events": [event]}
    response = Client().post("/track", body, content_type="application/json")
    assert response.status_code == 200, response.content[:300]
    consumer = get_broker().subscribe(topic=FUNCTIONS, consumer_name="hostile")
    messages = consumer.receive(max_messages=100, timeout=2)
    assert not store_bulk_jobs(get_store(), messages).failures
    consumer.acknowledge(messages)
    stored = get_store().search("event", session_id="hostile-s")
    assert [event["properties"] for event in stored if event["type"] == "t"] == [properties]
