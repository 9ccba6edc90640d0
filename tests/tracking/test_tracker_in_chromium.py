"""A browser tracker in real Chromium, calling /track the way Tracardi's tracker does:
from another origin, with a preflight (a custom header), `fetch` with credentials, and
`navigator.sendBeacon` when the page is hidden. The page is written here for the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.store import get_store
from tests.helpers import drain, wait_for
from tests.support.receivers import PageServer
from tracking.models import EventMapping

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = """<!doctype html>
<html><head><title>Shop</title></head><body><h1>Shop</h1><script>
const API = "%(api)s", SOURCE = "%(source)s";
function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return found ? found.split("=")[1] : null;
}
function sessionId() {
  let id = cookie("sid");
  if (!id) { id = crypto.randomUUID(); document.cookie = "sid=" + id + "; path=/"; }
  return id;
}
function payload(events, options) {
  const profile = localStorage.getItem("pid");
  return JSON.stringify({source: {id: SOURCE}, session: {id: sessionId()}, profile: profile ? {id: profile} : null,
                         context: {}, events: events, options: options || {}});
}
function event(type, properties) {
  return {type: type, properties: properties || {}, time: {create: new Date().toISOString()},
          context: {page: {url: location.href, title: document.title}}};
}
window.answers = [];
window.track = async function (events, options) {
  const response = await fetch(API + "/track", {
    method: "POST", credentials: "include", body: payload(events, options),
    headers: {"Content-Type": "application/json", "x-timestamp": String(Date.now())},
  });
  const data = await response.json();
  if (data.profile && data.profile.id && !localStorage.getItem("pid")) localStorage.setItem("pid", data.profile.id);
  window.answers.push({status: response.status, data: data});
  return data;
};
let beaconSent = false;
function beacon() {
  if (beaconSent) return;
  beaconSent = true;
  const body = new Blob([payload([event("page-hide")])], {type: "application/json"});
  navigator.sendBeacon(API + "/track", body);
}
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") beacon(); });
window.addEventListener("pagehide", beacon);
window.track([event("page-view")]);
</script></body></html>
"""


@pytest.fixture
def page_origin() -> Iterator[tuple[str, dict]]:
    """A web server of the shop, on another origin than the API; the page is set by the test."""
    content: dict = {}
    site = PageServer(lambda _path: content["page"])
    yield site.origin, content
    site.stop()


def answers(browser) -> list[dict]:
    return browser.execute_script("return window.answers || []")


def stored(event_type: str, **filters: str) -> int:
    drain()
    return get_store().count("event", type=event_type, **filters)


def test_the_tracker_works_cross_origin_with_credentials_beacons_and_returning_visitors(
    browser, live_api, page_origin, make_source, worker_settings
):
    origin, content = page_origin
    worker_settings("background")
    source = make_source(allowed_origins=origin)
    EventMapping.objects.create(
        name="Email",
        event_type="identify",
        mappings=[{"event": "event@properties.email", "profile": "traits.email", "operation": "equals"}],
    )
    content["page"] = PAGE % {"api": live_api, "source": source.id}

    # A first visit: the page view arrives through a preflighted, credentialed fetch.
    browser.get(f"{origin}/products")
    first = wait_for(lambda: answers(browser), timeout=20, message="the first /track answer")[0]
    assert first["status"] == 200
    profile_id = first["data"]["profile"]["id"]
    session_id = first["data"]["session"]["id"]
    assert wait_for(lambda: stored("page-view", session_id=session_id) == 1, timeout=20)

    # options.profile: the profile as it will be after this payload, traits and stats included.
    data = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.track([event('identify', {email: 'ann@example.com'})], {profile: true}).then(done);"
    )
    assert data["profile"]["traits"] == {"email": "ann@example.com"}
    assert data["profile"]["stats"]["events"] == 2

    # Leaving the page sends the last event as a beacon.
    browser.get("about:blank")
    assert wait_for(lambda: stored("page-hide", session_id=session_id) == 1, timeout=20, message="the beacon event")

    # A new session (the session cookie expired) keeps the visitor's profile.
    browser.get(f"{origin}/products")
    wait_for(lambda: answers(browser), timeout=20)
    browser.delete_cookie("sid")
    browser.refresh()
    second = wait_for(lambda: answers(browser), timeout=20, message="the new session's answer")[0]
    assert second["data"]["session"]["id"] != session_id
    assert second["data"]["profile"]["id"] == profile_id
    wait_for(lambda: stored("page-view", profile_id=profile_id) == 3, timeout=20)
    profile = get_store().get("profile", profile_id)
    assert profile["metadata"]["time"]["visit"]["count"] == 2
    assert profile["traits"] == {"email": "ann@example.com"}
    session = get_store().get("session", second["data"]["session"]["id"])
    assert session["context"]["page"]["url"] == f"{origin}/products"

    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not [e for e in errors if "CORS" in e or "Access-Control" in e], errors
