"""Swagger UI and Redoc render in a real browser under the pages' Content-Security-Policy."""

from __future__ import annotations

from selenium.webdriver.common.by import By

from tests.helpers import wait_for


def page_text(browser) -> str:
    return browser.find_element(By.TAG_NAME, "body").text


def test_swagger_ui_renders_the_operations(live_api: str, browser) -> None:
    browser.get(f"{live_api}/api/docs/")
    wait_for(lambda: "/track" in page_text(browser) and "/readyz" in page_text(browser), timeout=30,
             message="Swagger UI lists the operations")  # fmt: skip
    assert "Send events" in page_text(browser)


def test_redoc_renders_the_operations(live_api: str, browser) -> None:
    browser.get(f"{live_api}/api/redoc/")
    wait_for(lambda: "Send events" in page_text(browser), timeout=30, message="Redoc shows the /track operation")
    # Redoc's styled-components <style> elements applied (the policy allows them here only):
    # its side menu is laid out, not a bare list.
    menu = browser.find_element(By.CSS_SELECTOR, ".menu-content")
    assert menu.value_of_css_property("position") in {"sticky", "fixed"}
