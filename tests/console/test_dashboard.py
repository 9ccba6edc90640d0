"""The console's backlog dashboard, in a real headless Chromium against gunicorn."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By

from queueing.broker import OutgoingMessage, get_broker
from queueing.selectors import topic_backlog
from queueing.topics import FUNCTIONS, partition_for
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def read(browser, script: str):
    """Reads the page in one script: the dashboard replaces its tables on every refresh."""
    return browser.execute_script(script)


def total(browser, topic: str) -> str | None:
    return read(browser, f"const t = document.getElementById('topic-{topic}'); return t && t.dataset.total;")


def log_in(browser, url: str) -> None:
    get_user_model().objects.create_superuser("ops", "ops@example.com", "s3cret-pass")
    browser.get(f"{url}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys("ops")
    browser.find_element(By.NAME, "password").send_keys("s3cret-pass")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(lambda: "/admin/login" not in browser.current_url, timeout=10)


def test_dashboard_shows_the_backlog_per_partition_and_refreshes_without_reloading(live_api, browser):
    log_in(browser, live_api)
    browser.find_element(By.LINK_TEXT, "Queue backlog and workers").click()
    wait_for(lambda: total(browser, "functions") == "0", timeout=10)
    browser.execute_script("window.__notReloaded = true;")

    get_broker().publish([OutgoingMessage(topic=FUNCTIONS, key="dash", payload={}) for _ in range(7)])
    wait_for(lambda: total(browser, "functions") == "7", timeout=10, message="the dashboard to show 7")
    assert browser.execute_script("return window.__notReloaded === true;")
    partition = FUNCTIONS.partition_url(partition_for("dash", 4))
    cells = read(
        browser,
        f"return [...document.querySelectorAll(\"#topic-functions tr[data-partition='{partition}'] td\")]"
        ".map(td => td.textContent);",
    )
    assert cells == [partition, "tracardi-function-subscription", "7"]
    # The same numbers as the API.
    api = topic_backlog(broker=get_broker(), topic=FUNCTIONS)
    assert api["total"] == 7
    assert total(browser, "functions-DLQ") == "0"


def test_the_dashboard_requires_a_staff_login(client):
    response = client.get("/admin/console/queues/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.get("/admin/console/queues/status.json").status_code == 302
