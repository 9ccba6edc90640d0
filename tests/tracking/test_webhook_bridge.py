"""POST /collect/{event_type}/{source_id}: the webhook bridge answers like /track, since it
runs /track's path with a payload built from the body."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import connection
from django.test import Client, override_settings

from queueing.models import QueueMessage
from storage.store import get_store
from tests.helpers import drain, payload
from tests.support.processes import start_api
from tests.support.scenarios import answers_503_while_the_broker_is_locked
from tracking.models import BridgeType, EventValidator, SessionIdentity

pytestmark = pytest.mark.django_db(transaction=True)


def collect(client: Client, path: str, body: object, **headers: str):
    raw = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(path, data=raw, content_type="application/json", headers=headers)


@pytest.fixture
def webhook(make_source):
    return make_source(bridge=BridgeType.WEBHOOK)


def stored_event(event_id: str) -> dict:
    drain()
    event = get_store().get("event", event_id)
    assert event is not None
    return event


def test_a_json_object_becomes_one_event_with_the_body_as_properties(client, webhook, worker_settings):
    worker_settings("background")
    response = collect(client, f"/collect/order-paid/{webhook.id}", {"order": "A-1", "total": 12.5})
    assert response.status_code == 200, response.content
    body = response.json()
    (event_id,) = body["events"]
    event = stored_event(event_id)
    assert event["type"] == "order-paid"
    assert event["properties"] == {"order": "A-1", "total": 12.5}
    assert body["session"]["id"] and body["profile"]["id"]


@pytest.mark.parametrize("value", [[1, 2], "text", 42, None, True])
def test_a_body_that_is_not_an_object_is_wrapped_as_value(client, webhook, worker_settings, value):
    worker_settings("background")
    response = collect(client, f"/collect/ping/{webhook.id}", value)
    assert response.status_code == 200, response.content
    assert stored_event(response.json()["events"][0])["properties"] == {"value": value}


def test_session_and_profile_come_from_the_query(client, webhook, worker_settings):
    worker_settings("background")
    first = collect(client, f"/collect/a/{webhook.id}", {}).json()
    session = str(uuid.uuid4())
    query = f"?session_id={session}&profile_id={first['profile']['id']}"
    second = collect(client, f"/collect/b/{webhook.id}{query}", {"n": 1}).json()
    assert second["session"]["id"] == session
    # A profile this system issued is adopted by the new session: the same visitor.
    assert second["profile"]["id"] == first["profile"]["id"]
    assert SessionIdentity.objects.get(session_id=session).profile_id == first["profile"]["id"]
    again = collect(client, f"/collect/c/{webhook.id}?session_id={session}", {}).json()
    assert again["profile"]["id"] == first["profile"]["id"]


def test_each_call_is_a_new_event(client, webhook):
    # A webhook body has no event id of ours: two calls are two events, even with equal bodies.
    one = collect(client, f"/collect/a/{webhook.id}", {"x": 1}).json()["events"]
    two = collect(client, f"/collect/a/{webhook.id}", {"x": 1}).json()["events"]
    assert one != two


def test_malformed_json_is_400(client, webhook):
    response = collect(client, f"/collect/a/{webhook.id}", b"{not json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Malformed JSON")


@override_settings(TRACK_MAX_BODY_BYTES=1000)
def test_a_body_over_the_limit_is_413(client, webhook):
    response = collect(client, f"/collect/a/{webhook.id}", {"text": "x" * 2000})
    assert response.status_code == 413
    assert "TRACK_MAX_BODY_BYTES" in response.json()["detail"]


def test_invalid_content_is_422_with_the_json_path(client, webhook):
    response = collect(client, f"/collect/a/{webhook.id}", {"ok": {"bad\u0000key": 1}})
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["path"].startswith("$")
    assert body["detail"].startswith("Invalid payload: $")


def test_unknown_and_disabled_sources_are_401(client, make_source):
    assert collect(client, "/collect/a/nope", {}).json() == {"detail": "Invalid event source."}
    assert collect(client, "/collect/a/nope", {}).status_code == 401
    disabled = make_source(bridge=BridgeType.WEBHOOK, enabled=False)
    response = collect(client, f"/collect/a/{disabled.id}", {})
    assert (response.status_code, response.json()) == (401, {"detail": "Event source disabled."})


def test_a_rest_source_is_refused_on_the_webhook_and_a_webhook_source_on_track(client, make_source, webhook):
    rest = make_source()
    response = collect(client, f"/collect/a/{rest.id}", {})
    assert response.status_code == 403
    assert response.json()["detail"] == (
        f"Event source {rest.id} is not a webhook bridge: send its events to /track, or set its bridge to Webhook."
    )
    response = collect(client, "/track", payload(webhook.id))
    assert response.status_code == 403
    assert response.json()["detail"] == (
        f"Event source {webhook.id} is a webhook bridge: post to /collect/{{event_type}}/{webhook.id}."
    )
    assert QueueMessage.objects.count() == 0


def test_origin_rules_apply(client, make_source):
    source = make_source(bridge=BridgeType.WEBHOOK, allowed_origins="https://shop.example", accept_without_origin=False)
    evil = collect(client, f"/collect/a/{source.id}", {}, Origin="https://evil.example")
    assert evil.status_code == 403
    assert evil.json()["detail"] == "Origin https://evil.example is not allowed by this event source."
    assert collect(client, f"/collect/a/{source.id}", {}).status_code == 403  # no Origin, and not accepted
    good = collect(client, f"/collect/a/{source.id}", {}, Origin="https://shop.example")
    assert good.status_code == 200
    assert good.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert QueueMessage.objects.count() == 1


def test_track_reads_a_json_body_sent_as_text_plain(client, make_source):
    """What navigator.sendBeacon and the tracker send: no preflight, read as JSON all the same."""
    source = make_source()
    raw = json.dumps(payload(source.id))
    response = client.post("/track", data=raw, content_type="text/plain;charset=UTF-8")
    assert response.status_code == 200
    assert len(response.json()["events"]) == 1


@pytest.mark.skipif(connection.vendor != "sqlite", reason="locks the SQLite file to make the broker fail")
def test_collect_answers_503_with_retry_after_while_the_broker_cannot_publish(process_env, make_source, tmp_path):
    source = make_source(bridge=BridgeType.WEBHOOK)
    server, url = start_api(env={**process_env, "DATABASE_TIMEOUT_SECONDS": "0.2"}, log=tmp_path / "api.log")
    try:
        answers_503_while_the_broker_is_locked(f"{url}/collect/a/{source.id}", {"x": 1})
    finally:
        server.stop()


@pytest.mark.parametrize(
    "body, status_code",
    [
        ('{"a":' * 70 + "{}" + "}" * 70, 422),  # deeper than TRACK_MAX_DEPTH
        ('{"a":' * 5000 + "{}" + "}" * 5000, 422),  # deeper than the parser's own limit
        ('{"s": "' + "x" * 500_000 + '"}', 200),  # a huge string within the body limit
        ('"\\ud800"', 400),  # a lone surrogate
        ("NaN", 400),
    ],
)
def test_hostile_bodies_get_a_clear_answer_never_a_500(client, webhook, worker_settings, body, status_code):
    response = client.post(f"/collect/a/{webhook.id}", data=body, content_type="application/json")
    assert response.status_code == status_code, response.content[:200]
    assert response["Content-Type"] == "application/json"


def test_an_event_type_too_long_for_an_event_is_422(client, webhook):
    response = client.post(f"/collect/{'t' * 300}/{webhook.id}", data="{}", content_type="application/json")
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "{event_type} of the URL"


def test_errors_name_the_query_parameter_or_the_bodys_own_path(client, webhook, make_source):
    response = collect(client, f"/collect/a/{webhook.id}?session_id={'s' * 300}", {})
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "?session_id"
    assert response.json()["detail"].startswith("Invalid payload: ?session_id: ")
    strict = make_source(bridge=BridgeType.WEBHOOK, strict_validation=True)
    EventValidator.objects.create(
        event_type="order", schema={"type": "object", "required": ["total"]}, enabled=True, name="order"
    )
    response = collect(client, f"/collect/order/{strict.id}", {"sku": "A"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "$", response.json()
