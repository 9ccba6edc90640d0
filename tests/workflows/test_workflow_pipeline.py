"""Workflows end to end: gunicorn, the background and workflow workers and the django-q2
cluster as processes, a real HTTP receiver as the CRM."""

from __future__ import annotations

import json

import pytest
import requests
from django.core.exceptions import ValidationError

from storage.store import get_store
from tests.helpers import payload, wait_for
from tests.workflows.helpers import COUNTER, example_to
from workflows.definitions import import_workflow, publish, rollback
from workflows.models import RunStatus, Workflow, WorkflowRun

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pipeline(live_api, spawn, make_source, worker_settings):
    """The API, a background worker, a workflow worker and the django-q2 cluster."""
    make_source(id="locust-test")
    worker_settings("background", enabled=True)
    worker_settings("workflow", enabled=True)

    def start(*, workflow_workers: int = 1, env: dict | None = None) -> list:
        processes = [spawn("run_worker", "background")]
        processes += [spawn("run_worker", "workflow", env=env) for _ in range(workflow_workers)]
        processes.append(spawn("qcluster"))
        return processes

    return live_api, start


def purchase(url: str, *, total: float, session: str, **extra) -> dict:
    body = payload(
        "locust-test", session={"id": session}, events=[{"type": "purchase", "properties": {"total": total}}]
    )
    response = requests.post(f"{url}/track", json=body | extra, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_example_workflow_tags_segments_and_calls_the_crm(pipeline, receiver):
    url, start = pipeline
    import_workflow(example_to(receiver.url), user="test")
    start()
    big = purchase(url, total=150, session="big")
    small = purchase(url, total=50, session="small")
    [call] = wait_for(lambda: receiver.received, timeout=30, message="the CRM call")
    assert call.method == "POST" and call.path == "/hook"
    assert json.loads(call.body) == {"profile": big["profile"]["id"], "total": 150}
    assert call.headers["Idempotency-Key"]
    store = get_store()
    profile = wait_for(
        lambda: (p := store.get("profile", big["profile"]["id"])) and "vip" in p["segments"] and p,
        timeout=30,
        message="the workflow's profile changes stored",
    )
    assert "big-spender" in profile["tags"]
    assert WorkflowRun.objects.filter(status=RunStatus.OK).count() == 1
    assert not WorkflowRun.objects.filter(profile_id=small["profile"]["id"]).exists()
    small_profile = store.get("profile", small["profile"]["id"])
    assert "vip" not in small_profile["segments"] and len(receiver.received) == 1


def test_two_workflow_workers_lose_no_increment_of_one_profile(pipeline):
    url, start = pipeline
    import_workflow(COUNTER, user="test")
    start(workflow_workers=2)
    first = purchase(url, total=1, session="one-profile")
    body = payload("locust-test", session={"id": "one-profile"})
    body["events"] = [{"type": "purchase", "properties": {"total": 1}} for _ in range(10)]
    for _ in range(20 - 1):
        assert requests.post(f"{url}/track", json=body, timeout=30).status_code == 200
    body["events"] = body["events"][:9]
    assert requests.post(f"{url}/track", json=body, timeout=30).status_code == 200
    profile_id = first["profile"]["id"]
    wait_for(
        lambda: (get_store().get("profile", profile_id) or {}).get("stats", {}).get("purchases") == 200,
        timeout=90,
        message="200 increments stored",
    )
    assert WorkflowRun.objects.filter(profile_id=profile_id).count() == 200


def test_a_workflow_worker_killed_mid_batch_applies_every_run_once(pipeline, spawn, worker_settings):
    url, start = pipeline
    import_workflow(COUNTER, user="test")
    worker_settings("workflow", enabled=True, min_batch_size=5, max_time_in_buffer=20)  # all 5 runs in one batch
    [_, victim, _] = start(env={"FAULT_INJECT": "workflow_runs_recorded:30"})
    answer = purchase(url, total=1, session="killed")
    for _ in range(4):
        purchase(url, total=1, session="killed")
    wait_for(lambda: WorkflowRun.objects.count() == 5, timeout=30, message="runs recorded before the pause")
    wait_for(lambda: "Fault injection: pausing" in victim.output(), timeout=30)
    victim.kill()
    spawn("run_worker", "workflow")
    profile_id = answer["profile"]["id"]
    wait_for(
        lambda: (get_store().get("profile", profile_id) or {}).get("stats", {}).get("purchases") == 5,
        timeout=60,
        message="the 5 runs applied",
    )
    wait_for(lambda: not WorkflowRun.objects.filter(published=False).exists(), timeout=30)
    assert get_store().get("profile", profile_id)["stats"]["purchases"] == 5
    assert WorkflowRun.objects.count() == 5


def test_disabled_draft_and_rollback_decide_what_runs(pipeline):
    url, start = pipeline
    workflow = import_workflow(COUNTER, user="test")
    start()
    # A draft edit does not run until it is published.
    workflow.draft["nodes"][1]["config"]["by"] = 100
    workflow.save()
    first = purchase(url, total=1, session="versions")
    profile_id = first["profile"]["id"]

    def purchases() -> int | None:
        return (get_store().get("profile", profile_id) or {}).get("stats", {}).get("purchases")

    wait_for(lambda: purchases() == 1, timeout=30, message="version 1 ran")
    version_1 = workflow.published
    publish(workflow=workflow, user="test")
    purchase(url, total=1, session="versions")
    wait_for(lambda: purchases() == 101, timeout=30, message="version 2 ran")
    rollback(workflow=Workflow.objects.get(pk=workflow.pk), version=version_1)
    purchase(url, total=1, session="versions")
    wait_for(lambda: purchases() == 102, timeout=30, message="version 1 ran again")
    Workflow.objects.filter(pk=workflow.pk).update(enabled=False)
    purchase(url, total=1, session="versions")
    purchase(url, total=1, session="other-after-disable")
    wait_for(lambda: get_store().count("event", type="purchase") == 5, timeout=30)
    assert WorkflowRun.objects.count() == 3  # a disabled workflow never runs


def test_a_cycle_is_refused_on_save_with_a_message():
    workflow = Workflow(
        name="Loop",
        draft={
            "nodes": [
                {"id": "start", "action": "start"},
                {"id": "a", "action": "add_tag", "config": {"tag": "x"}},
                {"id": "b", "action": "add_tag", "config": {"tag": "y"}},
            ],
            "edges": [{"from": "start", "to": "a"}, {"from": "a", "to": "b"}, {"from": "b", "to": "a"}],
        },
    )
    with pytest.raises(ValidationError) as refused:
        workflow.full_clean()
    assert "cycle" in str(refused.value).lower()
