"""The console's backlog dashboard, in a real headless Chromium against gunicorn."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from queueing.broker import OutgoingMessage, get_broker
from queueing.selectors import topic_backlog
from queueing.topics import FUNCTIONS, partition_for
from tests.helpers import wait_for
from tests.support.console import log_in, read, total

pytestmark = pytest.mark.django_db(transaction=True)


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
