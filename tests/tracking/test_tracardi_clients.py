"""What Tracardi's own clients (the browser tracker, the Python SDK, the locust benchmark)
rely on, against a live server."""

from __future__ import annotations

import pytest
import requests

from storage.store import get_store
from tests.helpers import drain, payload
from tracking.models import EventMapping

pytestmark = pytest.mark.django_db(transaction=True)

SHOP = "https://shop.example.com"


@pytest.fixture
def api(live_api, worker_settings):
    worker_settings("background")
    worker_settings("collector", enabled=True)
    return live_api


def track(url: str, body: dict, **headers: str) -> requests.Response:
    return requests.post(f"{url}/track", json=body, headers=headers, timeout=30)


def test_credentials_are_allowed_for_a_named_origin_on_the_preflight_and_the_answer(api, make_source):
    """sendBeacon sends credentials: without Allow-Credentials the browser drops the beacon."""
    source = make_source(allowed_origins=SHOP)
    preflight = requests.options(
        f"{api}/track",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-timestamp",
        },
        timeout=10,
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == SHOP
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert preflight.headers["Access-Control-Allow-Headers"] == "content-type,x-timestamp"
    answer = track(api, payload(source.id), Origin=SHOP)
    assert answer.headers["Access-Control-Allow-Origin"] == SHOP
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"


def test_a_known_profile_id_is_adopted_by_a_new_session_and_an_unknown_one_replaced(api, make_source):
    source = make_source()
    first = track(api, payload(source.id, session={"id": "visit-1"})).json()
    profile_id = first["profile"]["id"]
    second = track(api, payload(source.id, session={"id": "visit-2"}, profile={"id": profile_id})).json()
    assert second["profile"]["id"] == profile_id
    stranger = track(api, payload(source.id, session={"id": "visit-3"}, profile={"id": "made-up-id"})).json()
    assert stranger["profile"]["id"] not in (profile_id, "made-up-id")
    drain()
    store = get_store()
    profile = store.get("profile", profile_id)
    assert profile["metadata"]["time"]["visit"]["count"] == 2
    assert profile["stats"]["events"] == 2
    assert {s["id"] for s in store.search("session", profile_id=profile_id)} == {"visit-1", "visit-2"}
    assert store.count("event", profile_id=profile_id, type="profile-created") == 1


@pytest.mark.parametrize("queue", [False, True], ids=["direct", "queued"])
def test_options_profile_returns_the_profile_as_it_will_be_after_the_payload(api, make_source, queue):
    source = make_source()
    EventMapping.objects.create(
        name="Email",
        event_type="identify",
        mappings=[{"event": "event@properties.email", "profile": "traits.email", "operation": "equals"}],
    )
    session = {"id": f"p-{queue}"}
    track(api, payload(source.id, session=session))
    drain()
    body = payload(
        source.id,
        session=session,
        events=[{"type": "identify", "properties": {"email": "ann@example.com"}}, {"type": "page-view"}],
        options={"profile": True, "queue": queue},
    )
    answer = track(api, body)
    assert answer.status_code == (201 if queue else 200)
    profile = answer.json()["profile"]
    assert profile["traits"] == {"email": "ann@example.com"}
    assert profile["stats"]["events"] == 3  # 1 stored before + 2 in this payload
    assert profile["metadata"]["time"]["visit"]["count"] == 1
    assert {"segments", "interests", "consents", "ids"} <= set(profile)
    drain()
    assert get_store().get("profile", profile["id"])["traits"] == profile["traits"]


def test_an_event_with_options_save_false_is_processed_but_not_stored(api, make_source):
    source = make_source()
    events = [{"type": "page-view"}, {"type": "ephemeral", "options": {"save": False}}]
    answer = track(api, payload(source.id, events=events)).json()
    kept, skipped = answer["events"]
    assert answer["debugging"]["events"] == {"saved": 1, "errors": [], "ids": [kept]}
    drain()
    store = get_store()
    assert store.get("event", kept) and store.get("event", skipped) is None
    assert store.get("profile", answer["profile"]["id"])["stats"]["events"] == 2


@pytest.mark.parametrize(
    "sent, create",
    [
        ({"create": "2026-11-01T10:00:00.123Z"}, "2026-11-01T10:00:00.123000+00:00"),
        ("2026-11-01T11:00:00+01:00", "2026-11-01T10:00:00+00:00"),
        ("2026-11-01T10:00:00", "2026-11-01T10:00:00+00:00"),
        (1793527200000, "2026-11-01T10:00:00+00:00"),
        (1793527200, "2026-11-01T10:00:00+00:00"),
    ],
)
def test_the_client_create_time_is_kept_beside_the_server_insert_time(api, make_source, sent, create):
    source = make_source()
    answer = track(api, payload(source.id, events=[{"type": "page-view", "time": sent}])).json()
    drain()
    time = get_store().get("event", answer["events"][0])["metadata"]["time"]
    assert time["create"] == create
    assert time["insert"] > "2026-11-29"  # the server's receive time


@pytest.mark.parametrize("sent", ["yesterday", {"create": "soon"}, True, [1]])
def test_a_time_that_is_not_a_time_is_422(api, make_source, sent):
    source = make_source()
    answer = track(api, payload(source.id, events=[{"type": "x", "time": sent}]))
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert error["path"].startswith("$.events[0].time")
    assert error["message"].startswith("Expected an ISO 8601 time")


def test_the_answer_has_tracardis_debugging_summary(api, make_source):
    source = make_source()
    answer = track(api, payload(source.id, events=[{"type": "a"}, {"type": "b"}])).json()
    assert answer["debugging"] == {
        "events": {"saved": 2, "errors": [], "ids": answer["events"]},
        "session": {"saved": 1, "ids": [answer["session"]["id"]]},
        "profile": {"saved": 1, "ids": [answer["profile"]["id"]]},
    }
    nothing = track(api, payload(source.id, options={"saveEvents": False, "saveSession": False})).json()
    assert nothing["debugging"]["events"]["saved"] == nothing["debugging"]["session"]["saved"] == 0


def test_the_page_of_the_latest_event_becomes_the_session_page(api, make_source):
    source = make_source()
    events = [
        {"type": "page-view", "context": {"page": {"url": "https://s.example/a?utm_source=news", "title": "A"}}},
        {"type": "page-view", "context": {"page": {"url": "https://s.example/b?utm_source=news", "title": "B"}}},
    ]
    answer = track(api, payload(source.id, events=events)).json()
    drain()
    session = get_store().get("session", answer["session"]["id"])
    assert session["context"]["page"]["title"] == "B"
    assert session["context"]["utm"] == {"source": "news"}


def test_unknown_api_paths_answer_json_404_and_the_admin_keeps_its_page(api):
    missing = requests.post(f"{api}/tracks", json={}, timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not found: POST /tracks"}
    admin = requests.get(f"{api}/admin/nothing-here/", timeout=10, allow_redirects=False)
    assert admin.status_code in (302, 404) and "json" not in admin.headers["Content-Type"]
