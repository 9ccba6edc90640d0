"""Worker logs end to end: real worker processes ship their lines, a broken log store does
not stop a worker, and the console's log page tails them in a real headless Chromium."""

from __future__ import annotations

import logging
import re

import pytest
import requests
from django.db import connection
from django.utils import timezone
from selenium.webdriver.common.by import By

from console.models import LogLine
from queueing.broker import OutgoingMessage, get_broker
from queueing.topics import FUNCTIONS
from storage.store import get_store
from tests.helpers import payload, wait_for
from tests.support.console import log_in
from tests.support.security import assert_strict_policy

pytestmark = pytest.mark.django_db(transaction=True)


def post_events(live_api: str, source_id: str) -> str:
    response = requests.post(f"{live_api}/track", json=payload(source_id), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["events"][0]


def stored(event_id: str) -> bool:
    store = get_store()
    store.refresh()
    return store.get("event", event_id) is not None


def test_a_background_worker_whose_log_store_is_gone_keeps_processing(live_api, spawn, make_source, worker_settings):
    source = make_source()
    worker_settings("background")
    with connection.schema_editor() as editor:
        editor.delete_model(LogLine)
    try:
        worker = spawn("run_worker", "background")
        for _ in range(3):
            event_id = post_events(live_api, source.id)
            wait_for(lambda event_id=event_id: stored(event_id), timeout=30, message="the event stored")
        # Its lines still go to stdout/stderr, the drops are told there, and it stops cleanly.
        wait_for(lambda: "Log shipping dropped" in worker.output(), timeout=10, message="the drops on stderr")
        assert "Events: Saved" in worker.output()
        assert worker.popen.poll() is None
        assert worker.stop() == 0
    finally:
        with connection.schema_editor() as editor:
            editor.create_model(LogLine)


def shown(browser) -> list[dict]:
    """The lines on the page, read in one script: the tail appends while we read."""
    return browser.execute_script(
        "return [...document.querySelectorAll('#log-lines li')]"
        ".map(li => ({id: li.dataset.id, level: li.dataset.level, text: li.textContent}));"
    )


def polled(browser) -> bool:
    return browser.find_element(By.ID, "log-updated").text.startswith("Updated")


def test_the_log_page_tails_a_worker_and_filters_by_level(live_api, browser, spawn, make_source, worker_settings):
    source = make_source()
    worker_settings("background", logging_level="INFO")
    worker = spawn("run_worker", "background")
    log_in(browser, live_api)
    browser.get(f"{live_api}/admin/console/queues/")
    browser.find_element(By.LINK_TEXT, "Worker logs").click()
    browser.get(f"{browser.current_url}?worker_type=background&pid={worker.pid}")  # the dashboard's link
    wait_for(lambda: polled(browser), timeout=15, message="the first poll")
    wait_for(
        lambda: any("Worker background started" in line["text"] for line in shown(browser)),
        timeout=15,
        message="the worker's start line",
    )
    browser.execute_script("window.__notReloaded = true;")

    event_id = post_events(live_api, source.id)
    wait_for(lambda: stored(event_id), timeout=30)
    wait_for(
        lambda: any("Events: Saved" in line["text"] for line in shown(browser)),
        timeout=15,
        message="the Events: Saved line on the page",
    )
    assert browser.execute_script("return window.__notReloaded === true;")
    lines = shown(browser)
    assert all(f"background {worker.pid}@" in line["text"] for line in lines)
    saved = next(line["text"] for line in lines if "Events: Saved" in line["text"])
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}: INFO: Events: Saved 4, Errors=0, ErrorIds=\[\]", saved)
    assert saved.endswith(")") and "(storage.workers:background.py:" in saved

    # A real WARNING from the worker (a message it cannot read), and an ERROR line of it.
    get_broker().publish([OutgoingMessage(topic=FUNCTIONS, key="bad", payload={"v": 0})])
    wait_for(lambda: any("Negatively acknowledged" in line["text"] for line in shown(browser)), timeout=15)
    LogLine.objects.create(
        time=timezone.now(), level=logging.ERROR, logger="storage.workers", message="an ERROR line",
        worker_type="background", host="h", pid=worker.pid,
    )  # fmt: skip

    browser.find_element(By.NAME, "level").send_keys("ERROR")
    browser.find_element(By.CSS_SELECTOR, "#log-filters input[type=submit]").click()
    wait_for(lambda: "level=ERROR" in browser.current_url and polled(browser), timeout=15)
    wait_for(lambda: shown(browser), timeout=15, message="the ERROR line")
    assert {line["level"] for line in shown(browser)} == {"ERROR"}
    assert not any("Events: Saved" in line["text"] or "Negatively" in line["text"] for line in shown(browser))


def test_the_query_parameters_filter_the_lines(admin_client):
    def line(**fields: object) -> LogLine:
        values = {"time": timezone.now(), "level": 20, "logger": "x", "message": "m", "host": "h", "pid": 1}
        return LogLine.objects.create(**{**values, "worker_type": "background", **fields})

    line(pid=11, message="mine")
    line(pid=12, message="other process")
    line(worker_type="collector", pid=11, message="other type")
    line(pid=11, level=40, message="an error of mine")
    line(pid=11, message="old", time=timezone.now() - timezone.timedelta(days=1))

    def messages(query: str) -> list[str]:
        response = admin_client.get(f"/admin/console/logs/lines.json?{query}")
        assert response.status_code == 200, response.content
        return [row["message"] for row in response.json()["lines"]]

    assert messages("worker_type=background&pid=11") == ["mine", "an error of mine", "old"]
    assert messages("worker_type=background&pid=11&level=WARNING") == ["an error of mine"]
    assert messages("q=OTHER") == ["other process", "other type"]
    since = (timezone.now() - timezone.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert messages(f"pid=11&since={since}") == ["mine", "other type", "an error of mine"]
    first = LogLine.objects.order_by("id").first().id
    assert messages(f"after={first}&pid=11") == ["other type", "an error of mine", "old"]
    assert admin_client.get("/admin/console/logs/lines.json?level=LOUD").status_code == 400
    page = admin_client.get("/admin/console/logs/?worker_type=background&pid=11")
    assert page.status_code == 200 and b'value="11"' in page.content


def test_the_log_page_requires_a_staff_login_and_has_the_strict_policy(client, admin_client):
    assert "/admin/login/" in client.get("/admin/console/logs/")["Location"]
    assert client.get("/admin/console/logs/lines.json").status_code == 302
    response = admin_client.get("/admin/console/logs/")
    assert_strict_policy(response)
    html = response.content.decode()
    assert all("src=" in attrs for attrs in re.findall(r"<script\b([^>]*)>", html))
    assert "<style" not in html and not re.search(r"\sstyle=", html) and not re.search(r"\son[a-z]+=", html)
