"""The workflows admin: the graph as a picture, publish, roll back, import, export, and a
test run on a sample event that sends nothing."""

from __future__ import annotations

import copy
import json

import pytest

from tests.workflows.helpers import EXAMPLE
from workflows.definitions import import_workflow
from workflows.models import Delivery, Workflow, WorkflowRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def workflow(make_source):
    make_source(id="locust-test")
    return import_workflow(copy.deepcopy(EXAMPLE), user="test")


def test_the_change_page_draws_the_graph_and_offers_publish_test_and_export(admin_client, workflow):
    page = admin_client.get(f"/admin/workflows/workflow/{workflow.pk}/change/").content.decode()
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" width=') == 2  # the draft and the published one
    assert "add_segment" in page and 'id="publish-draft"' in page and 'id="test-draft"' in page
    assert "Export JSON" in page and "runs now" in page


def test_publish_and_rollback_from_the_admin(admin_client, workflow):
    workflow.draft["nodes"][1]["config"]["tag"] = "whale"
    workflow.save()
    admin_client.post(f"/admin/workflows/workflow/{workflow.pk}/publish/")
    workflow.refresh_from_db()
    assert workflow.published.number == 2 and workflow.published.graph["nodes"][1]["config"]["tag"] == "whale"
    first = workflow.versions.get(number=1)
    rollback_url = f"/admin/workflows/workflow/{workflow.pk}/rollback/{first.pk}/"
    page = admin_client.get(f"/admin/workflows/workflow/{workflow.pk}/change/").content.decode()
    assert f'form="rollback-version" formaction="{rollback_url}"' in page and 'id="rollback-version"' in page
    admin_client.get(rollback_url)  # a link or a prefetch changes nothing
    workflow.refresh_from_db()
    assert workflow.published.number == 2
    admin_client.post(rollback_url)
    workflow.refresh_from_db()
    assert workflow.published.number == 1


def test_an_invalid_draft_is_refused_with_its_messages(admin_client, workflow):
    data = {
        "name": workflow.name, "description": "", "enabled": "on",
        "draft": json.dumps({"nodes": [{"id": "start", "action": "start"}, {"id": "x", "action": "nope"}]}),
        "triggers-TOTAL_FORMS": "0", "triggers-INITIAL_FORMS": "0",
        "versions-TOTAL_FORMS": "1", "versions-INITIAL_FORMS": "1",
        "versions-0-id": str(workflow.published.pk), "versions-0-workflow": str(workflow.pk),
    }  # fmt: skip
    page = admin_client.post(f"/admin/workflows/workflow/{workflow.pk}/change/", data).content.decode()
    assert "nope" in page and "errorlist" in page


def test_import_and_export_in_the_admin(admin_client, make_source):
    make_source(id="locust-test")
    response = admin_client.post("/admin/workflows/workflow/import/", {"definition": json.dumps(EXAMPLE)})
    assert response.status_code == 302
    workflow = Workflow.objects.get(name=EXAMPLE["name"])
    exported = admin_client.get(f"/admin/workflows/workflow/{workflow.pk}/export/")
    assert json.loads(exported.content)["nodes"] == EXAMPLE["nodes"]
    bad = admin_client.post("/admin/workflows/workflow/import/", {"definition": '{"name": "x", "nodes": []}'})
    assert "exactly one start node" in bad.content.decode().lower() or "start" in bad.content.decode()


def test_a_test_run_shows_the_trace_and_what_it_would_send_and_sends_nothing(admin_client, workflow):
    sample = {"type": "purchase", "profile": {"id": "p-1"}, "properties": {"total": 150}}
    page = admin_client.post(
        f"/admin/workflows/workflow/{workflow.pk}/test/", {"sample": json.dumps(sample)}
    ).content.decode()
    assert 'id="test-status">ok<' in page
    assert "would-send" in page and "127.0.0.1:9999/hook" in page and "&quot;total&quot;: 150" in page
    assert '<pre class="would-send">http from crm: {\n  &quot;method&quot;: &quot;POST&quot;' in page  # JSON
    assert not Delivery.objects.exists() and not WorkflowRun.objects.exists()


def test_the_runs_list_filters_and_shows_a_trace(admin_client, workflow):
    from django.utils import timezone

    run = WorkflowRun.objects.create(
        run_key="k1", workflow=workflow, workflow_name=workflow.name, version_number=1, event_id="e1",
        event_type="purchase", profile_id="p-1", status="failed", error="boom", started_at=timezone.now(),
        duration_ms=1.5, trace=[{"node_id": "tag", "action": "add_tag", "status": "error", "port": None,
                                 "duration_ms": 0.2, "error": "boom", "input": {}}],
    )  # fmt: skip
    listing = admin_client.get("/admin/workflows/workflowrun/?status__exact=failed&q=p-1").content.decode()
    assert workflow.name in listing
    detail = admin_client.get(f"/admin/workflows/workflowrun/{run.pk}/change/").content.decode()
    assert "run-trace" in detail and "boom" in detail
