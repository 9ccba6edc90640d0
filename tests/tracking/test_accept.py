"""tracking.accept.accept called directly: the decisions /track makes about a verified,
well-formed payload, without HTTP (the views only read, check the source and serialize)."""

from __future__ import annotations

import pytest

from queueing.backends.database import DatabaseBroker
from queueing.models import QueueMessage
from tests.helpers import payload
from tracking.accept import COLLECTOR_DISABLED_WARNING, NO_EVENTS_WARNING, TrackError, accept
from tracking.models import EventValidator
from tracking.selectors import clear_caches, get_source
from tracking.services import RequestMeta
from tracking.validation import validate_track_payload

pytestmark = pytest.mark.django_db(transaction=True)
META = RequestMeta(ip="127.0.0.1", headers={"user-agent": "test"}, received_at="2026-11-29T12:00:00+00:00")


def accepted(source_id: str, **overrides: object):
    body = validate_track_payload(payload(source_id, **overrides))
    return accept(broker=DatabaseBroker(), source=get_source(source_id=source_id), payload=body, meta=META)


def test_a_payload_is_processed_with_200_and_its_storage_job_published(make_source):
    source = make_source()
    outcome = accepted(source.id)
    assert outcome.status_code == 200
    assert outcome.body["warnings"] == [] and len(outcome.body["events"]) == 1
    assert list(QueueMessage.objects.values_list("topic", flat=True)) == ["functions"]


def test_queue_mode_answers_201_with_a_task_or_200_with_a_warning_when_the_collector_is_off(
    make_source, worker_settings
):
    source = make_source()
    worker_settings("collector", enabled=False)
    off = accepted(source.id, options={"queue": True})
    assert (off.status_code, off.body["warnings"]) == (200, [COLLECTOR_DISABLED_WARNING])
    assert "task" not in off.body
    worker_settings("collector", enabled=True)
    clear_caches()  # collector_enabled() is cached for SOURCE_CACHE_SECONDS
    queued = accepted(source.id, options={"queue": True})
    assert queued.status_code == 201 and queued.body["task"]
    assert QueueMessage.objects.filter(topic="collector").count() == 1


def test_no_events_is_answered_with_a_warning_and_publishes_nothing(make_source):
    source = make_source()
    outcome = accepted(source.id, events=[])
    assert (outcome.status_code, outcome.body["warnings"], outcome.body["events"]) == (200, [NO_EVENTS_WARNING], [])
    assert QueueMessage.objects.count() == 0


def test_a_strict_source_refuses_an_invalid_event_with_422_and_publishes_nothing(make_source):
    source = make_source(strict_validation=True)
    EventValidator.objects.create(name="V", event_type="page-view", schema={"required": ["x"]}, target="properties")
    with pytest.raises(TrackError) as refused:
        accepted(source.id)
    assert refused.value.status_code == 422
    assert refused.value.errors == [
        {"path": "$.events[0].properties", "message": "'x' is a required property (validator V)"}
    ]
    assert QueueMessage.objects.count() == 0


def test_a_lenient_source_stores_an_invalid_event_and_warns(make_source):
    source = make_source()
    EventValidator.objects.create(name="V", event_type="page-view", schema={"required": ["x"]}, target="properties")
    outcome = accepted(source.id)
    assert outcome.status_code == 200
    assert outcome.body["warnings"] == ["$.events[0].properties: 'x' is a required property (validator V)"]
