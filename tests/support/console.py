"""The console in a real browser: logging in and reading the dashboard."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By

from tests.helpers import wait_for


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
