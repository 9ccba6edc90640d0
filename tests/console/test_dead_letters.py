"""Dead letters in the console: a message that failed until dead-lettered, its cause fixed,
replayed from the page in a real Chromium, is stored exactly once."""

from __future__ import annotations

import uuid

import pytest
from selenium.webdriver.common.by import By

from queueing.broker import OutgoingMessage, get_broker
from queueing.topics import FUNCTIONS
from storage.jobs import ProfileChange, ProfileOperation, StorageJob
from storage.workers.background import BackgroundWorker
from tests.helpers import wait_for
from tests.support.console import log_in

pytestmark = pytest.mark.django_db(transaction=True)

TIME = "2026-11-29T10:00:00+00:00"


def job(profile_id: str, event_id: str) -> OutgoingMessage:
    payload = StorageJob(
        job_id=str(uuid.uuid4()),
        profile=ProfileChange(profile_id, "", [ProfileOperation("increment", "stats.events", 1, event=event_id)]),
        session=None,
        events=[
            {
                "id": event_id, "type": "purchase", "source": {"id": "web"}, "session": None,
                "profile": {"id": profile_id}, "metadata": {"time": {"insert": TIME}},
            }
        ],
    ).to_payload()  # fmt: skip
    return OutgoingMessage(topic=FUNCTIONS, key=profile_id, payload=payload)


def dead_letter_rows(browser) -> list[dict]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#dead-letters tbody tr[data-id]')].map(tr => ({"
        "id: tr.dataset.id, key: tr.dataset.key, deliveries: tr.querySelector('.deliveries').textContent.trim(),"
        "error: tr.querySelector('.error').textContent.trim()}));"
    )


def test_a_dead_letter_replayed_after_its_cause_is_fixed_is_stored_once(
    live_api, browser, es_store, settings, worker_settings
):
    settings.MAX_REDELIVERIES = 2
    settings.QUEUE_NACK_DELAY_SECONDS = 0
    worker_settings("background", min_batch_size=1, max_time_in_buffer=0)
    opener = {"id": "opener", "type": "x", "source": {"id": "web"}, "metadata": {"time": {"insert": TIME}}}
    es_store.save_events([opener])  # creates the month's index
    # The cause: the month's event index refuses writes (say, a full disk made it read-only).
    month_index = f"{settings.TENANT}.event-2026-11"
    es_store.es.indices.put_settings(index=month_index, settings={"index.blocks.write": True})
    profile_id, event_id = f"p-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    get_broker().publish([job(profile_id, event_id)])
    worker = BackgroundWorker(store=es_store)
    try:
        wait_for(
            lambda: worker.process_batch() is not None and get_broker().dead_letters(FUNCTIONS),
            timeout=60,
            message="the job dead-lettered",
        )
    finally:
        worker.consumer.close()

    log_in(browser, live_api)
    browser.get(f"{live_api}/admin/console/dead-letters/functions/?q={profile_id}")
    (row,) = dead_letter_rows(browser)
    assert row["key"] == profile_id and row["deliveries"] == "3"
    assert "cluster_block_exception" in row["error"] or "blocked" in row["error"], row
    payload = browser.find_element(By.CSS_SELECTOR, "#dead-letters pre.console-json").get_attribute("textContent")
    assert f'"id": "{event_id}"' in payload  # pretty JSON

    es_store.es.indices.put_settings(index=month_index, settings={"index.blocks.write": False})  # the fix
    browser.find_element(By.CSS_SELECTOR, f"input.select-row[value='{row['id']}']").click()
    browser.find_element(By.CSS_SELECTOR, "button[value='replay']").click()
    wait_for(lambda: "Replayed 1 dead letter(s)" in browser.page_source, timeout=10, message="the replay message")
    assert dead_letter_rows(browser) == []

    worker = BackgroundWorker(store=es_store)
    try:
        wait_for(
            lambda: (worker.process_batch(), es_store.refresh(), es_store.count("event", profile_id=profile_id))[2],
            timeout=30,
            message="the replayed event stored",
        )
        assert not worker.process_batch()  # nothing else queued
    finally:
        worker.consumer.close()
    assert es_store.count("event", profile_id=profile_id) == 1
    assert es_store.get("profile", profile_id)["stats"]["events"] == 1  # applied once, not per delivery
    assert get_broker().dead_letters(FUNCTIONS) == []


def test_purge_all_from_the_console_and_staff_only(admin_client, client, settings):
    broker = get_broker()
    settings.MAX_REDELIVERIES = 0
    broker.publish([OutgoingMessage(topic=FUNCTIONS, key=f"k{i}", payload={"v": 99}) for i in range(3)])
    consumer = broker.subscribe(topic=FUNCTIONS, consumer_name="t")
    wait_for(
        lambda: (
            consumer.negative_acknowledge(consumer.receive(max_messages=10, timeout=0.2), error="bad schema")
            or len(broker.dead_letters(FUNCTIONS)) == 3
        ),
        timeout=10,
    )
    consumer.close()
    page = admin_client.get("/admin/console/dead-letters/functions/", {"q": "bad schema"}).content.decode()
    assert page.count('class="select-row"') == 3
    action_url = "/admin/console/dead-letters/functions/action/"
    response = admin_client.post(action_url, {"action": "bogus"}, follow=True)
    assert "Unknown action &#x27;bogus&#x27;." in response.content.decode()
    assert len(broker.dead_letters(FUNCTIONS)) == 3
    response = admin_client.post(action_url, {"action": "purge-all"}, follow=True)
    assert "Purged 3 dead letter(s)." in response.content.decode()
    assert broker.dead_letters(FUNCTIONS) == []
    assert client.get("/admin/console/dead-letters/functions/").status_code == 302  # to the login
