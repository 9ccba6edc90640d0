"""Integrity: no visitor reaches another's data, retries change nothing twice, hostile
input gets a clear 4xx, and a failing profile operation fails alone."""

from __future__ import annotations

import gzip
import json
import logging

import pytest
from django.core.exceptions import ValidationError
from django.test import RequestFactory

from queueing.broker import get_broker
from queueing.models import QueueMessage
from queueing.topics import FUNCTIONS
from storage.store import get_store
from tests.helpers import drain, payload
from tracking.middleware import RequestIdMiddleware
from tracking.models import EventMapping
from tracking.services import request_headers

pytestmark = pytest.mark.django_db(transaction=True)


def post(client, body, *, content_type: str = "application/json", **headers):
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/track", data=raw, content_type=content_type, headers=headers)


@pytest.fixture
def source(make_source, worker_settings):
    worker_settings("background")
    worker_settings("collector", enabled=True)
    return make_source()


# --- 1. event ids --------------------------------------------------------------------


def test_the_same_event_id_from_another_session_is_another_event(client, source):
    first = post(client, payload(source.id, session={"id": "dupA"}, events=[{"id": "E1", "type": "purchase"}]))
    second = post(
        client,
        payload(source.id, session={"id": "dupB"}, events=[{"id": "E1", "type": "refund", "properties": {"x": 1}}]),
    )
    assert first.status_code == second.status_code == 200
    drain()
    store = get_store()
    mine, theirs = store.get("event", first.json()["events"][0]), store.get("event", second.json()["events"][0])
    assert (mine["type"], mine["session"], mine["properties"]) == ("purchase", {"id": "dupA"}, {})
    assert (theirs["type"], theirs["session"]) == ("refund", {"id": "dupB"})
    assert mine["metadata"]["client_id"] == theirs["metadata"]["client_id"] == "E1"
    assert store.count("event", type="purchase") == store.count("event", type="refund") == 1


@pytest.mark.parametrize("queue", [False, True], ids=["direct", "queued"])
def test_a_retried_request_is_stored_once_and_counted_once(client, source, queue):
    body = payload(
        source.id,
        events=[{"id": "E1", "type": "page-view"}, {"id": "E2", "type": "page-view"}],
        options={"queue": queue},
    )
    answers = [post(client, body).json() for _ in range(3)]  # the first answers were lost
    drain()
    assert answers[0]["events"] == answers[1]["events"] == answers[2]["events"]
    store = get_store()
    assert store.count("event", session_id=body["session"]["id"], type="page-view") == 2
    profile = store.get("profile", answers[0]["profile"]["id"])
    assert profile["stats"]["events"] == 2
    assert profile["metadata"]["time"]["visit"]["count"] == 1


def test_a_retry_with_other_content_changes_nothing(client, source):
    session = {"id": "s-retry"}
    first = post(client, payload(source.id, session=session, events=[{"id": "E1", "type": "a"}])).json()
    post(client, payload(source.id, session=session, events=[{"id": "E1", "type": "b", "properties": {"x": 1}}]))
    drain()
    assert get_store().get("event", first["events"][0])["type"] == "a"


# --- 3. hostile JSON ----------------------------------------------------------------


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [70, 252, 600, 1100, 5000])
@pytest.mark.parametrize("where", ["properties", "context"])
def test_deep_nesting_is_422_with_the_path(client, source, depth, where):
    body = json.dumps(payload(source.id, events=[{"type": "x", where: "DEEP"}]))
    deep = '{"a":' * depth + "{}" + "}" * depth  # written out: Python's own encoder stops at ~1000
    response = post(client, body.replace('"DEEP"', deep))
    assert response.status_code == 422, response.content[:200]
    [error] = response.json()["errors"]
    assert error["message"] == "Nested deeper than TRACK_MAX_DEPTH (64 levels)."
    if depth < 1000:  # beyond the parser's own limit no path is known
        assert error["path"].startswith(f"$.events[0].{where}.a.a")
    assert QueueMessage.objects.count() == 0


@pytest.mark.parametrize(
    "key, message",
    [
        ("\u0000", "A key must have at most 256 characters and no U+0000."),
        ("a\u0000b", "A key must have at most 256 characters and no U+0000."),
        ("k" * 257, "A key must have at most 256 characters and no U+0000."),
    ],
)
def test_keys_no_store_could_index_are_422(client, source, key, message):
    body = json.dumps(payload(source.id, events=[{"type": "x", "properties": {"ok": {key: 1}}}]))
    response = post(client, body)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["message"] == message and error["path"].startswith("$.events[0].properties.ok.")


def test_keys_adding_up_to_too_long_a_path_are_422(client, source):
    properties: dict = {}
    node = properties
    for _ in range(40):
        node = node.setdefault("k" * 250, {})
    response = post(client, payload(source.id, events=[{"type": "x", "properties": properties}]))
    assert response.status_code == 422
    assert response.json()["errors"][0]["message"] == "The keys of this path exceed 8000 characters."


def test_nesting_up_to_the_limit_is_stored(client, source):
    response = post(client, payload(source.id, events=[{"type": "x", "properties": nested(60)}]))
    assert response.status_code == 200
    drain()
    assert get_store().get("event", response.json()["events"][0])["properties"] == nested(60)


def test_an_unexpected_error_answers_json_500_with_the_request_id(caplog):
    def fail(request):
        raise RuntimeError("boom")

    middleware = RequestIdMiddleware(fail)
    request = RequestFactory().post("/track", HTTP_X_REQUEST_ID="req-42")
    request.request_id = "req-42"  # as __call__ sets it before the view runs
    with caplog.at_level(logging.ERROR, logger="tracking.api"):
        try:
            fail(request)
        except RuntimeError as exc:  # Django hands a view's exception to process_exception
            response = middleware.process_exception(request, exc)
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["request_id"] == "req-42"
    assert "request id req-42" in caplog.text and "RuntimeError: boom" in caplog.text


def test_every_response_carries_a_request_id(client, source):
    given = post(client, payload(source.id), X_Request_ID="abc-123")
    assert given["X-Request-ID"] == "abc-123"
    made = post(client, payload(source.id), X_Request_ID="<script>")
    assert made["X-Request-ID"] != "<script>" and len(made["X-Request-ID"]) == 32


# --- 4. a failing profile operation ----------------------------------------------------


def test_a_poison_operation_fails_alone_and_nothing_is_dead_lettered(client, source, caplog):
    EventMapping.objects.create(
        name="Poison",
        event_type="poison",
        mappings=[
            {"event": "event@properties.obj", "profile": "traits.x", "operation": "equals"},
            {"event": "event@properties.n", "profile": "traits.x", "operation": "increment"},
        ],
    )
    events = [{"type": "page-view"}, {"type": "poison", "properties": {"obj": {"a": 1}, "n": 1}}]
    events += [{"type": "page-view"}, {"type": "page-view"}]
    answer = post(client, payload(source.id, events=events)).json()
    with caplog.at_level(logging.INFO, logger="storage.workers"):
        drain()
    store = get_store()
    profile = store.get("profile", answer["profile"]["id"])
    assert profile["traits"]["x"] == {"a": 1}
    assert profile["stats"]["events"] == 4
    assert profile["metadata"]["time"]["visit"]["count"] == 1  # the system visit operations applied
    poison = store.get("event", answer["events"][1])
    [note] = poison["metadata"]["failed_operations"]
    assert note.startswith("increment traits.x: cannot increment 'traits.x'")
    assert all(store.get("event", e) for e in answer["events"])
    assert "Profiles: Saved 1, Errors=0" in caplog.text
    assert f"operation increment traits.x of event {answer['events'][1]} was not applied" in caplog.text
    assert sum(p.count for p in get_broker().backlog(topic=FUNCTIONS.dead_letter)) == 0


@pytest.mark.parametrize(
    "mappings, message",
    [
        (
            [
                {"event": "event@properties.n", "profile": "traits.x", "operation": "increment"},
                {"event": "event@properties.tag", "profile": "traits.x", "operation": "append"},
            ],
            "'traits.x' cannot be a number (increment) and a list (append) at once",
        ),
        (
            [
                {"event": "event@properties.n", "profile": "traits.x", "operation": "increment"},
                {"event": "event@properties.name", "profile": "traits.x.name", "operation": "equals"},
            ],
            "'traits.x.name' is inside 'traits.x', which increment makes a number",
        ),
    ],
)
def test_conflicting_mappings_are_refused_on_save(mappings, message):
    rule = EventMapping(name="Conflict", event_type="purchase", mappings=mappings)
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rule.full_clean()


def test_a_mapping_conflicting_with_another_enabled_rule_is_refused():
    EventMapping.objects.create(
        name="Count",
        event_type="purchase",
        mappings=[{"event": "event@properties.n", "profile": "stats.orders", "operation": "increment"}],
    )
    rule = EventMapping(
        name="List",
        event_type="purchase",
        mappings=[{"event": "event@properties.id", "profile": "stats.orders", "operation": "append"}],
    )
    with pytest.raises(ValidationError, match="cannot be a list"):
        rule.full_clean()
    rule.enabled = False  # a disabled rule never runs beside it
    rule.full_clean()


# --- 6. origins ------------------------------------------------------------------------


def test_a_request_from_an_origin_the_source_does_not_list_is_refused(client, make_source, worker_settings):
    source = make_source(allowed_origins="https://good.example.com")
    body = json.dumps(payload(source.id))
    evil = post(client, body, content_type="text/plain", Origin="https://evil.example")
    assert evil.status_code == 403
    assert evil.json() == {"detail": "Origin https://evil.example is not allowed by this event source."}
    assert QueueMessage.objects.count() == 0
    good = post(client, body, content_type="text/plain", Origin="https://good.example.com")
    assert good.status_code == 200
    assert good["Access-Control-Allow-Origin"] == "https://good.example.com"


def test_requests_without_an_origin_follow_the_source_setting(client, make_source):
    servers_too = make_source(allowed_origins="https://good.example.com")
    assert post(client, payload(servers_too.id)).status_code == 200
    browsers_only = make_source(allowed_origins="https://good.example.com", accept_without_origin=False)
    refused = post(client, payload(browsers_only.id))
    assert refused.status_code == 403
    assert refused.json() == {"detail": "This event source accepts only browsers of its origins."}
    anyone = make_source(allowed_origins="*", accept_without_origin=False)
    assert post(client, payload(anyone.id), Origin="https://any.example").status_code == 200


# --- 7. headers ------------------------------------------------------------------------


def test_credential_like_headers_are_never_stored():
    environ = {
        "HTTP_USER_AGENT": "agent",
        "HTTP_ACCEPT_LANGUAGE": "en",
        "HTTP_AUTHORIZATION": "Bearer x",
        "HTTP_PROXY_AUTHORIZATION": "Basic x",
        "HTTP_COOKIE": "sid=x",
        "HTTP_SET_COOKIE": "sid=x",
        "HTTP_X_API_KEY": "x",
        "HTTP_X_AUTH_TOKEN": "x",
        "HTTP_X_ACCESS_TOKEN": "x",
        "HTTP_X_CLIENT_SECRET": "x",
        "HTTP_APIKEY": "x",
        "HTTP_X_CSRFTOKEN": "x",
        "HTTP_X_AMZ_SIGNATURE": "x",
        "CONTENT_TYPE": "application/json",
    }
    assert request_headers(environ) == {
        "user-agent": "agent",
        "accept-language": "en",
        "content-type": "application/json",
    }


def test_the_dropped_header_patterns_are_configurable(settings):
    settings.TRACK_DROP_HEADERS = ("x-tenant-*",)
    headers = request_headers({"HTTP_X_TENANT_PIN": "1", "HTTP_X_API_KEY": "kept now"})
    assert headers == {"x-api-key": "kept now"}


# --- 9. compressed bodies ----------------------------------------------------------------


def test_a_gzip_body_is_decompressed_and_a_bomb_or_an_unknown_encoding_refused(client, source, settings):
    body = json.dumps(payload(source.id)).encode()
    ok = client.post(
        "/track", data=gzip.compress(body), content_type="application/json", headers={"Content-Encoding": "gzip"}
    )
    assert ok.status_code == 200 and len(ok.json()["events"]) == 1
    bomb = gzip.compress(b" " * (settings.TRACK_MAX_BODY_BYTES + 10))
    too_large = client.post("/track", data=bomb, content_type="application/json", headers={"Content-Encoding": "gzip"})
    assert too_large.status_code == 413 and "after decompression" in too_large.json()["detail"]
    brotli = client.post("/track", data=body, content_type="application/json", headers={"Content-Encoding": "br"})
    assert brotli.status_code == 415 and brotli["Accept-Encoding"] == "gzip, deflate"
    corrupt = client.post(
        "/track", data=b"\x1f\x8bnot", content_type="application/json", headers={"Content-Encoding": "gzip"}
    )
    assert corrupt.status_code == 400
