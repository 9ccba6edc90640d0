"""Rolling a workflow back from its admin page in Chromium: the version rows' buttons post
through the page's own rollback form (a row sits inside the change form)."""

from __future__ import annotations

import copy

import pytest
from selenium.webdriver.common.by import By

from tests.helpers import wait_for
from tests.support.console import log_in
from tests.workflows.helpers import EXAMPLE
from workflows.definitions import import_workflow, publish
from workflows.models import Workflow

pytestmark = pytest.mark.django_db(transaction=True)


def test_roll_back_to_an_earlier_version_in_the_browser(live_api, browser, make_source):
    make_source(id="locust-test")
    workflow = import_workflow(copy.deepcopy(EXAMPLE), user="test")
    workflow.draft["nodes"][1]["config"]["tag"] = "whale"
    workflow.save()
    publish(workflow=workflow, user="test")
    log_in(browser, live_api)
    browser.get(f"{live_api}/admin/workflows/workflow/{workflow.pk}/change/")
    (button,) = browser.find_elements(By.XPATH, "//button[normalize-space()='Roll back to this version']")
    button.click()
    wait_for(lambda: "Triggers run version 1 again" in browser.page_source, timeout=10, message="the message")
    assert Workflow.objects.get(pk=workflow.pk).published.number == 1
    assert browser.current_url.endswith(f"/admin/workflows/workflow/{workflow.pk}/change/")
