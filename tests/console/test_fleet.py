"""The backlog and fleet dashboard in a real headless Chromium: the sampled chart while a
backlog drains, replicas changed from the page, a stopped worker shown hung and replaced."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from queueing.models import WorkerHeartbeat, WorkerSettings
from tests.helpers import wait_for
from tests.support.console import log_in, read, total
from tests.support.jobs import publish_event_job
from tests.support.processes import start_api

pytestmark = pytest.mark.django_db(transaction=True)

DASHBOARD = "/admin/console/queues/"
# run_workers without the outbox's cluster: these tests watch the workers only.
SUPERVISOR_ENV = {"OUTBOX_RUN_CLUSTER": "false"}


def chart_points(browser, topic: str) -> list[int] | None:
    return read(
        browser,
        f"const s = document.querySelector('#topic-{topic} svg.backlog-chart');"
        " return s && JSON.parse(s.dataset.points);",
    )


def metric(browser, topic: str, name: str) -> str | None:
    return read(
        browser,
        f"const m = document.querySelector(\"#topic-{topic} [data-metric='{name}']\"); return m && m.textContent;",
    )


def processes(browser, worker_type: str) -> dict[int, str]:
    """{pid: state} of the process rows the page shows for one worker type."""
    rows = read(
        browser,
        f"return [...document.querySelectorAll('#fleet-{worker_type}-processes tr[data-pid]')]"
        ".map(tr => [Number(tr.dataset.pid), tr.dataset.state]);",
    )
    return dict(rows or [])


def only_background(worker_settings, **values: object) -> None:
    worker_settings("background", enabled=True, **values)
    worker_settings("collector", enabled=False)
    worker_settings("workflow", enabled=False)


def test_the_chart_and_the_counts_follow_a_draining_backlog_and_survive_a_reload(
    live_api, browser, spawn, worker_settings
):
    only_background(worker_settings, max_batch_size=10)
    for _ in range(30):
        publish_event_job()
    log_in(browser, live_api)
    browser.get(f"{live_api}{DASHBOARD}")
    wait_for(lambda: total(browser, "functions") == "30", timeout=10, message="the backlog of 30")
    # Sampled on the server (the page asked for one when it loaded): a point at 30.
    wait_for(lambda: 30 in (chart_points(browser, "functions") or []), timeout=20, message="a sample of 30")
    assert metric(browser, "functions", "oldest waiting").removeprefix("oldest waiting: ").endswith(" s")

    spawn("run_worker", "background")
    wait_for(lambda: total(browser, "functions") == "0", timeout=60, message="the backlog drained on the page")
    # Messages acknowledged between two samples: a positive out rate, then a point at 0.
    wait_for(
        lambda: metric(browser, "functions", "out") not in (None, "out: —", "out: 0.0/s"),
        timeout=20,
        message="an out rate",
    )
    wait_for(lambda: (chart_points(browser, "functions") or [None])[-1] == 0, timeout=20, message="a point at 0")
    assert metric(browser, "functions", "oldest waiting") == "oldest waiting: —"
    points = chart_points(browser, "functions")
    assert points[0] == 30 and points[-1] == 0

    # The history is on the server: a reload shows the same points (and maybe a newer one).
    browser.refresh()
    wait_for(lambda: chart_points(browser, "functions"), timeout=10)
    assert chart_points(browser, "functions")[: len(points)] == points
    # An empty dead-letter topic is one line.
    assert read(browser, "return document.getElementById('topic-functions-DLQ').tagName;") == "P"
    assert read(browser, "return document.getElementById('topic-functions-DLQ').textContent;") == (
        "system/functions-DLQ: empty"
    )


def test_replicas_changed_on_the_dashboard_start_a_second_background_worker(live_api, browser, spawn, worker_settings):
    only_background(worker_settings, replicas=1)
    spawn("run_workers", env=SUPERVISOR_ENV)
    log_in(browser, live_api)
    browser.get(f"{live_api}{DASHBOARD}")
    first = wait_for(
        lambda: (p := processes(browser, "background")) and list(p.values()) == ["running"] and p,
        timeout=60,
        message="one running background worker on the page",
    )
    replicas = browser.find_element(By.ID, "id_background-replicas")
    replicas.clear()
    replicas.send_keys("2")
    browser.find_element(By.CSS_SELECTOR, "#fleet-background-form input[type=submit]").click()
    wait_for(lambda: "changed replicas" in browser.page_source, timeout=10, message="the change confirmed")
    assert WorkerSettings.objects.get(worker_type="background").replicas == 2

    def two_running() -> bool:
        shown = processes(browser, "background")
        return len(shown) == 2 and set(shown.values()) == {"running"} and set(first) < set(shown)

    wait_for(two_running, timeout=60, message="two running background workers on the page")
    live = WorkerHeartbeat.objects.filter(worker_type="background", stopped=False)
    assert len(set(live.values_list("pid", flat=True))) == 2
    summary = read(browser, "const s = document.getElementById('fleet-background-summary'); return s.dataset;")
    assert summary == {"running": "2", "desired": "2"}


def test_a_stopped_worker_shows_as_hung_then_replaced(browser, spawn, worker_settings, process_env, tmp_path):
    hang = {"WORKER_HANG_SECONDS": "6"}  # more than QUEUE_LEASE_SECONDS=2 (FAST_QUEUE_ENV)
    # A server of its own: the page must judge hangs with the supervisor's limit.
    api, url = start_api(env={**process_env, **hang}, log=tmp_path / "gunicorn-hang.log")
    try:
        only_background(worker_settings, replicas=1)
        spawn("run_workers", env={**SUPERVISOR_ENV, **hang})
        log_in(browser, url)
        browser.get(f"{url}{DASHBOARD}")
        (victim,) = wait_for(
            lambda: (p := processes(browser, "background")) and list(p.values()) == ["running"] and p,
            timeout=60,
            message="one running background worker on the page",
        )
        os.kill(victim, signal.SIGSTOP)
        try:
            wait_for(lambda: processes(browser, "background").get(victim) == "hung", timeout=90, message="shown hung")

            def replaced() -> bool:
                shown = processes(browser, "background")
                return shown.get(victim) == "hung" and "running" in {s for p, s in shown.items() if p != victim}

            wait_for(replaced, timeout=90, message="a running replacement next to the hung one")
        finally:
            if Path(f"/proc/{victim}").exists():
                os.kill(victim, signal.SIGCONT)
        link = read(browser, f"return document.querySelector(\"tr[data-pid='{victim}'] a\").getAttribute('href');")
        assert link == f"/admin/console/logs/?worker_type=background&pid={victim}"
    finally:
        api.stop()


def test_the_dashboard_forms_refuse_invalid_values(client, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    response = client.post(
        "/admin/console/workers/background/settings/",
        {"background-enabled": "on", "background-replicas": "65", "background-logging_level": "INFO"},
        follow=True,
    )
    refused = "background not changed: replicas: Ensure this value is less than or equal to 64."
    assert refused in response.content.decode()
    assert not WorkerSettings.objects.filter(replicas=65).exists()
    response = client.post(
        "/admin/console/workers/background/settings/",
        {"background-replicas": "3", "background-logging_level": "VERBOSE"},
    )
    assert not WorkerSettings.objects.filter(logging_level="VERBOSE").exists()
    client.post(
        "/admin/console/workers/background/settings/",
        {"background-replicas": "3", "background-logging_level": "DEBUG"},
    )
    row = WorkerSettings.objects.get(worker_type="background")
    assert (row.enabled, row.replicas, row.logging_level) == (False, 3, "DEBUG")
    assert client.get("/admin/console/workers/background/settings/").status_code == 405
    assert client.post("/admin/console/workers/nope/settings/", {}).status_code == 404


def test_the_settings_endpoint_is_staff_only_and_csrf_protected(client, django_user_model):
    from django.test import Client

    form = {"background-replicas": "2", "background-logging_level": "INFO"}
    response = client.post("/admin/console/workers/background/settings/", form)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    user = django_user_model.objects.create_user("plain", password="pw")
    client.force_login(user)
    assert "/admin/login/" in client.post("/admin/console/workers/background/settings/", form)["Location"]
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(django_user_model.objects.create_user("staff2", password="pw", is_staff=True))
    assert strict.post("/admin/console/workers/background/settings/", form).status_code == 403
    assert not WorkerSettings.objects.filter(worker_type="background", replicas=2).exists()


def test_the_helm_values_page_shows_the_current_settings(client, django_user_model, worker_settings):
    worker_settings("background", enabled=True, replicas=3, logging_level="DEBUG")
    client.force_login(django_user_model.objects.create_user("staff3", password="pw", is_staff=True))
    page = client.get("/admin/console/helm/").content.decode()
    expected = "  background:\n    enabled: true\n    replicas: 3\n    config:\n      loggingLevel: &quot;DEBUG&quot;"
    assert expected in page
