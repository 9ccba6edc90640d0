"""Stored data in the console (profile search and detail in Chromium) and GDPR deletion
(console and API): a message queued for a deleted profile does not bring it back."""

from __future__ import annotations

import uuid

import pytest
import requests
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from selenium.webdriver.common.by import By

from queueing.broker import OutgoingMessage, get_broker
from queueing.topics import FUNCTIONS
from storage.jobs import ProfileChange, ProfileOperation, SessionChange, StorageJob
from storage.models import ProfileTombstone
from storage.store import get_store
from storage.workers.background import BackgroundWorker
from tests.helpers import payload, wait_for
from tests.support.console import log_in
from tests.support.processes import start_api
from tracking.models import SessionIdentity

pytestmark = pytest.mark.django_db(transaction=True)


def storage_job(profile_id: str, session_id: str, event_id: str, **metadata) -> StorageJob:
    return StorageJob(
        job_id=str(uuid.uuid4()),
        profile=ProfileChange(profile_id, "", [ProfileOperation("increment", "stats.events", 1, event=event_id)]),
        session=SessionChange(id=session_id, profile_id=profile_id, source_id="web", time="2026-11-29T10:00:00+00:00"),
        events=[
            {
                "id": event_id, "type": "purchase", "source": {"id": "web"}, "session": {"id": session_id},
                "profile": {"id": profile_id}, "properties": {"total": 3},
                "metadata": {"time": {"insert": "2026-11-29T10:00:00+00:00"}, **metadata},
            }
        ],
    )  # fmt: skip


def store_jobs(*jobs: StorageJob) -> None:
    """Publishes the jobs and runs the background worker until they are stored."""
    get_broker().publish(
        [OutgoingMessage(topic=FUNCTIONS, key=j.profile.profile_id, payload=j.to_payload()) for j in jobs]
    )
    worker = BackgroundWorker()
    try:
        while worker.process_batch():
            pass
    finally:
        worker.consumer.close()


def test_profile_search_detail_and_links_to_its_sessions_and_events(live_api, browser, worker_settings):
    worker_settings("background", min_batch_size=1, max_time_in_buffer=0)
    ann, bob = f"ann-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    store_jobs(
        storage_job(ann, "s-ann", "e-ann", valid=False, validation=["$.properties.total: must be a string"]),
        storage_job(bob, "s-bob", "e-bob"),
    )
    log_in(browser, live_api)
    browser.get(f"{live_api}/admin/")
    browser.find_element(By.LINK_TEXT, "Stored profiles, sessions and events").click()

    def ids():
        # One script, so the list is read from one page: a search submitted just before may
        # replace the page between finding the rows and reading them (a stale element).
        return browser.execute_script(
            "return [...document.querySelectorAll('#data-list tr[data-id]')].map((tr) => tr.dataset.id);"
        )

    assert sorted(ids()) == sorted([ann, bob])
    browser.find_element(By.NAME, "id").send_keys(ann)
    browser.find_element(By.CSS_SELECTOR, "#data-search input[type=submit]").click()
    wait_for(lambda: ids() == [ann], timeout=10, message="the search result")
    browser.find_element(By.LINK_TEXT, ann).click()
    document = browser.find_element(By.ID, "document").text
    assert f'"id": "{ann}"' in document and '"events": 1' in document  # pretty JSON
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#latest-sessions a")] == ["s-ann"]
    browser.find_element(By.ID, "profile-events").click()
    wait_for(lambda: ids() == ["e-ann"], timeout=10, message="the profile's events")
    assert browser.find_element(By.CSS_SELECTOR, "#data-list td.flags").text == "invalid"
    browser.find_element(By.LINK_TEXT, "e-ann").click()
    assert "$.properties.total: must be a string" in browser.find_element(By.ID, "validation").text
    browser.find_element(By.ID, "link-session").click()
    assert browser.find_element(By.ID, "link-profile").text == ann


def test_gdpr_delete_from_the_console_and_a_queued_message_does_not_bring_the_profile_back(
    admin_client, worker_settings
):
    worker_settings("background", min_batch_size=1, max_time_in_buffer=0)
    gone, kept = f"gone-{uuid.uuid4().hex[:6]}", f"kept-{uuid.uuid4().hex[:6]}"
    store_jobs(storage_job(gone, "s-gone", "e-gone-1"), storage_job(kept, "s-kept", "e-kept"))
    SessionIdentity.objects.create(session_id="s-gone", profile_id=gone, source_id="web")
    # Queued before the deletion, stored after it.
    late = storage_job(gone, "s-gone-2", "e-gone-2")
    get_broker().publish([OutgoingMessage(topic=FUNCTIONS, key=gone, payload=late.to_payload())])

    confirm = admin_client.get(f"/admin/console/data/profiles/{gone}/delete/").content.decode()
    assert "its 1 session(s) and 1 event(s) will be deleted" in confirm
    response = admin_client.post(f"/admin/console/data/profiles/{gone}/delete/", follow=True)
    assert f"Deleted profile {gone}: 1 profile, 1 session(s), 1 event(s)." in response.content.decode()
    assert ProfileTombstone.objects.filter(profile_id=gone).exists()
    assert not SessionIdentity.objects.filter(profile_id=gone).exists()  # a returning session gets a new profile

    store_jobs()  # the background worker meets the queued message
    store = get_store()
    assert store.get("profile", gone) is None
    assert store.get("session", "s-gone-2") is None and store.get("event", "e-gone-2") is None
    assert store.count("event", profile_id=gone) == 0
    assert store.get("profile", kept) and store.get("event", "e-kept")  # nothing else touched
    assert sum(e.count for e in get_broker().backlog(topic=FUNCTIONS)) == 0  # handled, not retried
    assert get_broker().dead_letters(FUNCTIONS) == []
    assert admin_client.get(f"/admin/console/data/profiles/{gone}/").status_code == 404


def test_gdpr_delete_through_the_api_with_a_staff_token(client, worker_settings):
    worker_settings("background", min_batch_size=1, max_time_in_buffer=0)
    profile_id = f"api-{uuid.uuid4().hex[:6]}"
    store_jobs(storage_job(profile_id, "s-api", "e-api"))
    assert client.delete(f"/api/profiles/{profile_id}").status_code == 401
    staff = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    token = Token.objects.create(user=staff)
    response = client.delete(f"/api/profiles/{profile_id}", headers={"Authorization": f"Token {token.key}"})
    assert response.status_code == 200
    assert response.json() == {"profile": profile_id, "deleted": {"profiles": 1, "sessions": 1, "events": 1}}
    assert ProfileTombstone.objects.get(profile_id=profile_id).deleted_by == "ops"
    assert get_store().get("profile", profile_id) is None
    too_long = client.delete(f"/api/profiles/{'y' * 256}", headers={"Authorization": f"Token {token.key}"})
    assert (too_long.status_code, too_long.json()) == (
        400,
        {"detail": "A profile id has at most 255 characters; this one has 256."},
    )
    assert not ProfileTombstone.objects.filter(profile_id="y" * 256).exists()
    nobody = get_user_model().objects.create_user("visitor", password="pw")
    other = Token.objects.create(user=nobody)
    assert client.delete("/api/profiles/x", headers={"Authorization": f"Token {other.key}"}).status_code == 403


def test_the_time_filters_take_the_forms_value_as_utc_and_refuse_what_is_not_a_time(admin_client, worker_settings):
    worker_settings("background", min_batch_size=1, max_time_in_buffer=0)
    store_jobs(storage_job("p-time", "s-time", "e-time"))  # inserted 2026-11-29T10:00 UTC

    def listed(**query: str):
        response = admin_client.get("/admin/console/data/events/", query)
        return response.status_code, [row["id"] for row in response.context["rows"]], response.content.decode()

    # A datetime-local input sends no zone: read as UTC.
    assert listed(since="2026-11-29T09:59")[:2] == (200, ["e-time"])
    assert listed(since="2026-11-29T10:01")[:2] == (200, [])
    assert listed(until="2026-11-29T12:00+02:00")[:2] == (200, [])  # 10:00 UTC, exclusive
    assert listed(until="2026-11-29T12:01+02:00")[:2] == (200, ["e-time"])
    for bad in ("garbage", "0001-01-01T00:00+05:00", "9999-12-31T23:59:59-05:00"):
        status, rows, page = listed(since=bad)
        assert (status, rows) == (400, []), bad
        assert "From (UTC): enter a date and time such as 2026-11-30T05:00 (UTC)" in page


def test_after_a_gdpr_delete_no_api_process_names_the_profile_again(process_env, make_source, tmp_path):
    """Both gunicorn workers had the session's profile in their caches; after the deletion
    they answer with a new one, and only that one, within SOURCE_CACHE_SECONDS."""
    # Its own API with the production caches (the shared test API caches nothing).
    api, url = start_api(env={**process_env, "SOURCE_CACHE_SECONDS": "2"}, log=tmp_path / "api.log")
    try:
        source = make_source()
        body = payload(source.id, session={"id": f"gdpr-{uuid.uuid4().hex[:8]}"})

        def answered() -> str:
            return requests.post(f"{url}/track", json=body, timeout=10).json()["profile"]["id"]

        deleted = answered()
        assert {answered() for _ in range(20)} == {deleted}  # known to both workers by now
        staff = get_user_model().objects.create_user(f"ops-{uuid.uuid4().hex[:6]}", password="pw", is_staff=True)
        token = Token.objects.create(user=staff)
        headers = {"Authorization": f"Token {token.key}"}
        assert requests.delete(f"{url}/api/profiles/{deleted}", headers=headers, timeout=30).status_code == 200

        # 20 answers in a row, from both workers, all with the same new profile.
        names = wait_for(
            lambda: len(ids := {answered() for _ in range(20)}) == 1 and deleted not in ids and ids,
            timeout=30,
            message="every answer with one new profile",
        )
        assert {SessionIdentity.objects.get(session_id=body["session"]["id"]).profile_id} == names
    finally:
        api.stop()
