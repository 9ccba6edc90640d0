"""/tracker.js: served as a cacheable script, and working in real Chromium on a shop's pages
served from another origin (page views, a custom event, the beacon, a returning visitor)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from storage.store import get_store
from tests.helpers import drain, wait_for
from tests.support.processes import free_port
from tests.support.receivers import PageServer

pytestmark = pytest.mark.django_db(transaction=True)

# flush-interval 60 s: a custom event is then delivered only when the page is left (the
# beacon), which makes the beacon observable; the page view is sent at once regardless.
PAGE = """<!doctype html>
<html><head><title>Shop %(path)s</title>
<script src="%(api)s/tracker.js" data-source="%(source)s" data-endpoint="%(endpoint)s"
        data-flush-interval="60000"></script>
</head><body><h1>%(path)s</h1><a id="next" href="/b">next</a></body></html>
"""


def test_tracker_js_is_a_cacheable_script(client):
    response = client.get("/tracker.js")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert response["Cache-Control"] == "public, max-age=86400"
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert "Content-Security-Policy" not in response  # a script, not a page
    assert b"sendBeacon" in response.content
    again = client.get("/tracker.js", headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.post("/tracker.js").status_code == 405


@pytest.fixture
def shop(live_api: str) -> Iterator[tuple[str, dict]]:
    """The shop's web server, another origin than the API; every path is a page loading the tracker."""
    settings: dict = {}

    def render(path: str) -> str:
        endpoint = settings.get("endpoint", live_api)
        return PAGE % {"path": path, "api": live_api, "endpoint": endpoint, "source": settings["source"]}

    site = PageServer(render)
    yield site.origin, settings
    site.stop()


def events_of(session_id: str) -> list[dict]:
    drain()
    return get_store().search("event", session_id=session_id)


def client_events(session_id: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for event in events_of(session_id):
        if "system" not in event.get("tags", []):
            found.setdefault(event["type"], []).append(event)
    return found


def tracker_value(browser, expression: str) -> object:
    return browser.execute_script(f"return window.tracker ? {expression} : null")


def test_the_tracker_in_chromium(browser, shop, make_source, worker_settings):
    origin, settings = shop
    worker_settings("background")
    settings["source"] = make_source(allowed_origins=origin).id

    browser.get(f"{origin}/a")
    profile_id = wait_for(lambda: tracker_value(browser, "tracker.profileId()"), timeout=20, message="a profile id")
    session_id = browser.get_cookie("tracardi_sid")["value"]
    assert browser.execute_script("return localStorage.getItem('tracardi_pid')") == profile_id

    browser.find_element("id", "next").click()
    wait_for(lambda: len(client_events(session_id).get("page-view", [])) == 2, timeout=20, message="two page views")

    browser.execute_script("tracker.track('add-to-cart', {sku: 'A-1', qty: 2})")
    browser.get("about:blank")  # leaving the page: the pending event goes as a beacon
    wait_for(lambda: "add-to-cart" in client_events(session_id), timeout=20, message="the beaconed event")

    stored = client_events(session_id)
    pages = sorted((e["context"]["page"] for e in stored["page-view"]), key=lambda p: p["path"])
    assert [(p["url"], p["path"], p["title"]) for p in pages] == [
        (f"{origin}/a", "/a", "Shop /a"),
        (f"{origin}/b", "/b", "Shop /b"),
    ]
    assert pages[1]["referrer"] == f"{origin}/a"
    (cart,) = stored["add-to-cart"]
    assert cart["properties"] == {"sku": "A-1", "qty": 2}
    assert cart["context"]["page"]["path"] == "/b"
    assert cart["metadata"]["client_id"]  # the tracker's event id, what makes its retries idempotent
    assert all(e["profile"]["id"] == profile_id for events in stored.values() for e in events)

    # The session cookie expired (deleted): a new session, the same visitor.
    browser.get(f"{origin}/a")
    # Its page view's answer renews the cookie: wait for it, or it could restore the old one.
    browser.execute_async_script("tracker.flush().then(arguments[arguments.length - 1])")
    browser.delete_cookie("tracardi_sid")
    browser.refresh()
    new_session = wait_for(
        lambda: (c := browser.get_cookie("tracardi_sid")) and c["value"] != session_id and c["value"],
        timeout=20,
        message="a new session cookie",
    )
    wait_for(lambda: client_events(new_session).get("page-view"), timeout=20, message="the new session's page view")
    (view,) = client_events(new_session)["page-view"]
    assert view["profile"]["id"] == profile_id
    assert get_store().get("profile", profile_id)["metadata"]["time"]["visit"]["count"] == 2

    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


@pytest.fixture
def flaky_api(live_api: str) -> Iterator[tuple[str, list[bytes]]]:
    """A proxy in front of the API that fails the tracker's first two sends with 503: the
    first after the API took it (the answer was lost on the way), the second before."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            bodies.append(body)
            headers = {"Content-Type": self.headers["Content-Type"], "Origin": self.headers["Origin"]}
            status, answer = 503, b'{"detail": "unavailable"}'
            if len(bodies) != 2:
                forwarded = requests.post(f"{live_api}/track", data=body, headers=headers, timeout=10)
                if len(bodies) > 2:
                    status, answer = forwarded.status_code, forwarded.content
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Access-Control-Allow-Origin", self.headers["Origin"])
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()
    server.server_close()


def test_the_tracker_retries_a_failed_send_and_the_event_is_stored_once(
    browser, shop, flaky_api, make_source, worker_settings
):
    origin, settings = shop
    settings["endpoint"], bodies = flaky_api
    worker_settings("background")
    settings["source"] = make_source(allowed_origins=origin).id

    browser.get(f"{origin}/a")
    profile_id = wait_for(lambda: tracker_value(browser, "tracker.profileId()"), timeout=30, message="the retried send")
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]  # the same events, ids and session
    session_id = browser.get_cookie("tracardi_sid")["value"]
    # The API took the first send and the third: the event id makes them one stored event.
    (view,) = client_events(session_id)["page-view"]
    assert view["profile"]["id"] == profile_id
