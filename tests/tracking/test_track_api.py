"""POST /track in-process: every error case, the options, and what is published."""

from __future__ import annotations

import json
import uuid

import orjson
import pytest
from django.test import Client

from queueing.models import QueueMessage
from storage.store import get_store
from storage.workers.background import BackgroundWorker
from tests.helpers import REFERENCE_PAYLOAD, payload
from tracking.accept import COLLECTOR_DISABLED_WARNING, NO_EVENTS_WARNING
from tracking.models import SessionIdentity
from tracking.services import stored_event_id

pytestmark = pytest.mark.django_db(transaction=True)


def post(client: Client, body: object, **headers: str):
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/track", data=raw, content_type="application/json", headers=headers)


def published(topic: str = "functions") -> list[dict]:
    return [orjson.loads(m.payload) for m in QueueMessage.objects.filter(topic=topic).order_by("id")]


def store_published(worker_settings) -> None:
    worker_settings("background")
    worker = BackgroundWorker()
    while worker.process_batch():
        pass
    worker.consumer.close()


@pytest.fixture
def source(make_source):
    return make_source()


def test_reference_payload_is_accepted_as_written(client, make_source, worker_settings):
    make_source(id="locust-test")
    worker_settings("collector", enabled=False)
    response = post(client, REFERENCE_PAYLOAD)
    assert response.status_code == 200
    body = response.json()
    assert body["session"] == {"id": "session-id"}
    assert body["profile"]["id"] != "profile-id"  # a new session gets a new profile: the id is not trusted
    assert len(body["events"]) == 1
    assert body["warnings"] == [COLLECTOR_DISABLED_WARNING]
    assert body["errors"] == [] and body["ux"] == [] and body["response"] == {}
    assert "X-Process-Time" in response.headers
    (job,) = published()
    assert job["profile"]["id"] == body["profile"]["id"]
    assert [e["id"] for e in job["events"] if "system" not in e["tags"]] == body["events"]
    assert sorted(e["type"] for e in job["events"] if "system" in e["tags"]) == [
        "profile-created", "session-opened", "visit-started",
    ]  # fmt: skip


def test_unknown_source_is_rejected_with_401(client):
    response = post(client, payload("no-such-source"))
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid event source."}
    assert "X-Process-Time" in response.headers


def test_disabled_source_is_rejected_with_401(client, make_source):
    source = make_source(enabled=False)
    response = post(client, payload(source.id))
    assert response.status_code == 401
    assert response.json() == {"detail": "Event source disabled."}


def test_missing_source_id_is_422_with_its_path(client):
    response = post(client, {"source": {}, "events": [{"type": "x"}]})
    assert response.status_code == 422
    assert {"path": "$.source.id", "message": "This field is required."} in response.json()["errors"]
    response = post(client, {"events": [{"type": "x"}]})
    assert {"path": "$.source", "message": "This field is required."} in response.json()["errors"]


def test_event_type_is_required_and_not_blank(client, source):
    response = post(client, payload(source.id, events=[{"properties": {}}, {"type": "  "}]))
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "Invalid payload: $.events[0].type: This field is required. (and 1 more)"
    assert body["errors"] == [
        {"path": "$.events[0].type", "message": "This field is required."},
        {"path": "$.events[1].type", "message": "This field may not be blank."},
    ]


@pytest.mark.parametrize("field", ["properties", "context", "options"])
def test_event_objects_must_be_objects(client, source, field):
    response = post(client, payload(source.id, events=[{"type": "x", field: ["not", "an", "object"]}]))
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"path": f"$.events[0].{field}", "message": "Expected an object but got array."}
    ]


def test_wrong_top_level_types_are_422_with_paths(client, source):
    body = payload(source.id, session=5, events={"type": "x"}, context="x", options={"queue": "maybe"})
    response = post(client, body)
    assert response.status_code == 422
    paths = {e["path"] for e in response.json()["errors"]}
    assert paths == {"$.session", "$.events", "$.context", "$.options.queue"}
    assert QueueMessage.objects.count() == 0


def test_a_json_array_is_422(client):
    response = post(client, "[]")
    assert response.status_code == 422
    assert response.json()["errors"] == [{"path": "$", "message": "Expected an object but got array."}]


def test_malformed_json_is_400(client, source):
    response = post(client, '{"source": {"id": ')
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Malformed JSON: ")


def test_a_body_that_is_not_utf8_is_400_saying_where(client, source):
    response = post(client, '{"source": {"id": "caf\xe9"}}'.encode("latin-1"))
    assert response.status_code == 400
    assert response.json() == {"detail": "Malformed JSON: the body is not valid UTF-8 (byte 0xe9 at offset 22)."}


def test_body_over_the_limit_is_413(client, source, settings):
    settings.TRACK_MAX_BODY_BYTES = 2048
    body = payload(source.id, events=[{"type": "x", "properties": {"blob": "a" * 4096}}])
    response = post(client, body)
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body is larger than TRACK_MAX_BODY_BYTES (2048 bytes)."}
    assert QueueMessage.objects.count() == 0


def test_more_events_than_the_limit_is_413(client, source, settings):
    settings.TRACK_MAX_EVENTS = 3
    response = post(client, payload(source.id, events=[{"type": "x"}] * 4))
    assert response.status_code == 413
    assert response.json() == {"detail": "Too many events: 4; TRACK_MAX_EVENTS allows 3 per request."}


def test_payload_without_events_answers_200_with_a_warning_and_stores_nothing(client, source):
    response = post(client, payload(source.id, events=[]))
    assert response.status_code == 200
    assert response.json()["warnings"] == [NO_EVENTS_WARNING]
    assert QueueMessage.objects.count() == 0
    assert SessionIdentity.objects.count() == 0


def test_event_without_id_gets_a_uuid4_and_a_given_id_is_scoped_to_its_source_and_session(client, source):
    body = payload(source.id, events=[{"type": "a"}, {"type": "b", "id": "my-event-1"}])
    response = post(client, body)
    generated, given = response.json()["events"]
    assert uuid.UUID(generated).version == 4
    assert given == stored_event_id(source_id=source.id, session_id=body["session"]["id"], client_id="my-event-1")
    assert uuid.UUID(given).version == 5


def test_events_are_stamped_and_secret_headers_are_not_stored(client, source, worker_settings):
    response = post(
        client,
        payload(source.id, context={"page": {"url": "https://a.example"}}),
        Authorization="Bearer secret",
        Cookie="sid=secret",
        User_Agent="pytest-agent",
    )
    body = response.json()
    store_published(worker_settings)
    event = get_store().get("event", body["events"][0])
    assert event["source"] == {"id": source.id}
    assert event["session"] == body["session"]
    assert event["profile"] == body["profile"]
    assert event["metadata"]["time"]["insert"]
    assert event["request"]["ip"] == "127.0.0.1"
    headers = event["request"]["headers"]
    assert headers["user-agent"] == "pytest-agent"
    assert "authorization" not in headers and "cookie" not in headers
    session = get_store().get("session", body["session"]["id"])
    assert session["context"]["page"] == {"url": "https://a.example"}


def test_profile_operations_count_visits_and_events(client, source, worker_settings):
    session = {"id": str(uuid.uuid4())}
    first = post(client, payload(source.id, session=session, events=[{"type": "a"}, {"type": "b"}])).json()
    post(client, payload(source.id, session=session, events=[{"type": "c"}]))
    store_published(worker_settings)
    profile = get_store().get("profile", first["profile"]["id"])
    assert profile["stats"]["events"] == 3
    visit = profile["metadata"]["time"]["visit"]
    assert visit["count"] == 1 and visit["current"] and visit["last"] is None


def test_a_new_session_gets_a_new_profile_unless_the_client_sends_one_this_system_issued(client, source):
    first = post(client, payload(source.id)).json()
    stranger = post(client, payload(source.id, profile={"id": "never-issued"})).json()
    assert stranger["profile"]["id"] not in (first["profile"]["id"], "never-issued")
    returning = post(client, payload(source.id, profile=first["profile"])).json()
    assert returning["session"] != first["session"]
    assert returning["profile"] == first["profile"]
    same_session = post(client, payload(source.id, session=first["session"], profile={"id": "other"})).json()
    assert same_session["profile"] == first["profile"]  # the registry decides, not the client


def test_static_profile_id_source_trusts_the_clients_profile(client, make_source):
    source = make_source(static_profile_id=True)
    body = post(client, payload(source.id, profile={"id": "crm-42"})).json()
    assert body["profile"] == {"id": "crm-42"}


def test_profile_less_gives_events_without_a_profile(client, source, worker_settings):
    body = post(client, payload(source.id, profile_less=True)).json()
    assert body["profile"] is None
    (job,) = published()
    assert job["profile"] is None
    store_published(worker_settings)
    assert get_store().get("event", body["events"][0])["profile"] is None


def test_missing_session_gets_a_new_one(client, source):
    body = post(client, {"source": {"id": source.id}, "events": [{"type": "x"}]}).json()
    assert uuid.UUID(body["session"]["id"]).version == 4


@pytest.mark.parametrize(
    ("option", "missing"),
    [("saveSession", "session"), ("saveEvents", "events"), ("saveProfile", "profile")],
)
def test_save_options_prevent_storing(client, source, option, missing):
    post(client, payload(source.id, options={option: False}))
    (job,) = published()
    assert not job[missing]
    kept = {"session", "events", "profile"} - {missing}
    assert all(job[k] for k in kept)


def test_transitional_source_stores_neither_events_nor_session(client, make_source):
    source = make_source(transitional=True)
    response = post(client, payload(source.id))
    assert response.status_code == 200
    (job,) = published()
    assert job["events"] == [] and job["session"] is None
    assert job["profile"]["ops"]  # the profile is still updated


def test_queue_mode_with_collector_enabled_publishes_the_raw_payload_and_answers_201(client, source, worker_settings):
    worker_settings("collector", enabled=True)
    body = payload(source.id, options={"queue": True})
    response = post(client, body, User_Agent="ua")
    assert response.status_code == 201
    answer = response.json()
    assert answer["task"] and answer["session"] == body["session"] and answer["profile"]["id"]
    (message,) = published("collector")
    assert message["task_id"] == answer["task"]
    assert message["payload"]["events"][0]["id"] == answer["events"][0]
    assert message["meta"]["headers"]["user-agent"] == "ua"
    assert published("functions") == []


def test_queue_mode_with_collector_disabled_processes_in_the_api(client, source, worker_settings):
    worker_settings("collector", enabled=False)
    response = post(client, payload(source.id, options={"queue": True}))
    assert response.status_code == 200
    assert response.json()["warnings"] == [COLLECTOR_DISABLED_WARNING]
    assert len(published("functions")) == 1 and published("collector") == []


def test_cors_preflight_and_origin_echo(client, make_source):
    source = make_source(allowed_origins="https://shop.example.com")
    preflight = client.options(
        "/track", headers={"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = post(client, payload(source.id), Origin="https://shop.example.com")
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    other = post(client, payload(source.id), Origin="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight_other = client.options("/track", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in preflight_other.headers


def test_wildcard_origin_echoes_any_origin(client, make_source):
    source = make_source(allowed_origins="*")
    response = post(client, payload(source.id), Origin="https://anywhere.example")
    assert response.headers["Access-Control-Allow-Origin"] == "https://anywhere.example"


def test_a_known_session_is_resolved_without_reading_the_registry_again(client, source):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    body = payload(source.id)
    post(client, body)  # registers the session
    post(client, body)  # reads it once, then it is kept
    with CaptureQueriesContext(connection) as queries:
        assert post(client, body).status_code == 200
    assert not [q for q in queries.captured_queries if "tracking_sessionidentity" in q["sql"]]
