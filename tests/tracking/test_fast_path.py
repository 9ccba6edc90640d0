"""POST /track through TrackFastPathMiddleware answers as the whole middleware chain and DRF
did: the same status, body and headers, for accepted payloads and for every kind of error.

Each case is sent twice, through the project's middleware and through the same list
without the fast path (which then reaches TrackView through URL resolving and DRF).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from tests.helpers import payload

pytestmark = pytest.mark.django_db(transaction=True)

FAST_PATH = "tracking.middleware.TrackFastPathMiddleware"
VOLATILE_HEADERS = {"X-Process-Time", "X-Request-ID", "Content-Length"}  # timing, random ids (ids in the body)


def chains(settings) -> list[tuple[str, Client]]:
    """(name, client) of both ways in; a client loads the middleware of its first request."""
    installed = django_settings.MIDDLEWARE
    assert FAST_PATH in installed
    fast = Client()
    fast.get("/healthz")
    settings.MIDDLEWARE = [m for m in installed if m != FAST_PATH]
    whole = Client()
    whole.get("/healthz")
    settings.MIDDLEWARE = installed
    return [("fast path", fast), ("whole chain", whole)]


def shape(value: Any) -> Any:
    """The body with its generated ids (uuids) blanked: two runs make different ones."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if isinstance(value, str) and len(value) == 36 and value.count("-") == 4:
        return "<uuid>"
    return value


def answers(settings, body: bytes | str, **extra: Any) -> list[dict[str, Any]]:
    results = []
    for name, client in chains(settings):
        response = client.post("/track", data=body, content_type="application/json", **extra)
        headers = dict(response.headers)
        results.append(
            {
                "via": name,
                "status": response.status_code,
                "body": shape(response.json()) if headers.get("Content-Type") == "application/json" else None,
                "headers": {k: v for k, v in headers.items() if k not in VOLATILE_HEADERS},
                "header names": set(headers),
            }
        )
    return results


def assert_same(results: list[dict[str, Any]]) -> dict[str, Any]:
    fast, whole = results
    assert {k: v for k, v in fast.items() if k != "via"} == {k: v for k, v in whole.items() if k != "via"}
    return fast


@pytest.mark.parametrize("queue", [True, False])
def test_an_accepted_payload(settings, make_source, worker_settings, queue):
    worker_settings("collector", enabled=True)
    source = make_source(allowed_origins="https://shop.example.com")
    body = json.dumps(payload(source.id, options={"queue": queue}))
    fast = assert_same(answers(settings, body, HTTP_ORIGIN="https://shop.example.com"))
    assert fast["status"] == (201 if queue else 200)
    assert fast["headers"]["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert {"X-Request-ID", "X-Process-Time", "X-Frame-Options", "X-Content-Type-Options", "Allow"} <= fast[
        "header names"
    ]


@pytest.mark.parametrize(
    "body, status",
    [
        (b"{not json", 400),
        (b"\xff\xfe", 400),
        (b"[]", 422),
        (json.dumps({"source": {"id": "no-such-source"}, "events": []}), 401),
        (json.dumps({"events": [{"type": "x"}]}), 422),
    ],
)
def test_a_refused_payload(settings, body, status):
    assert assert_same(answers(settings, body))["status"] == status


def test_a_body_over_the_limit(settings, make_source):
    settings.TRACK_MAX_BODY_BYTES = 100
    body = json.dumps(payload(make_source().id))
    assert assert_same(answers(settings, body))["status"] == 413


def test_an_unknown_host_is_a_json_400(settings, make_source):
    body = json.dumps(payload(make_source().id))
    fast, whole = answers(settings, body, HTTP_HOST="evil.example")
    assert fast["status"] == whole["status"] == 400
    # Down the whole chain it is Django's HTML page; /track answers JSON, as to any refusal.
    assert fast["body"] == {"detail": "Bad request: Invalid HTTP_HOST header: 'evil.example'. "
                            "You may need to add 'evil.example' to ALLOWED_HOSTS."}  # fmt: skip
    assert whole["header names"] - {"Content-Security-Policy"} <= fast["header names"]


def test_https_headers_and_redirect(settings, make_source):
    settings.SECURE_HSTS_SECONDS = 31_536_000
    body = json.dumps(payload(make_source().id))
    secure = assert_same(answers(settings, body, secure=True))
    assert secure["headers"]["Strict-Transport-Security"] == "max-age=31536000"
    settings.SECURE_SSL_REDIRECT = True
    redirected = assert_same(answers(settings, body))
    assert redirected["status"] == 301 and redirected["headers"]["Location"].startswith("https://")


def test_an_unexpected_error_is_a_json_500_with_the_request_id(settings, make_source):
    # A setting of the wrong type: nothing in the code expects it, so it fails as a bug would.
    settings.TRACK_MAX_DEPTH = "deep"
    body = json.dumps(payload(make_source().id))
    fast = assert_same(answers(settings, body, HTTP_X_REQUEST_ID="req-42"))
    assert fast["status"] == 500 and fast["body"]["request_id"] == "req-42"


def test_other_methods_and_paths_take_the_whole_chain(client):
    assert client.get("/track").status_code == 405  # DRF's answer: not the fast path's
    assert client.options("/track").status_code == 200
