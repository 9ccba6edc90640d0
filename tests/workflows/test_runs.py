"""Workflow definitions and runs in this process, on the database broker and store: the
workers' batch functions are called directly."""

from __future__ import annotations

import copy
import json

import pytest
from django.core.management import call_command

from storage.store import get_store
from storage.workers.background import BackgroundWorker
from tests.helpers import payload
from tests.workflows.helpers import COUNTER, EXAMPLE
from workflows.definitions import DefinitionInvalid, export_workflow, import_workflow, publish
from workflows.models import RunStatus, TriggerRule, Workflow, WorkflowRun, WorkflowVersion
from workflows.worker import WorkflowWorker

pytestmark = pytest.mark.django_db(transaction=True)


def run_everything() -> None:
    """Background, workflow, background: until the topics are empty."""
    while True:
        done = 0
        for worker_class in (BackgroundWorker, WorkflowWorker, BackgroundWorker):
            worker = worker_class()
            while count := worker.process_batch():
                done += count
            worker.consumer.close()
        if not done:
            return


@pytest.fixture
def source(make_source, worker_settings):
    worker_settings("background")
    worker_settings("workflow", enabled=True, min_batch_size=1, max_time_in_buffer=0.1)
    return make_source(id="locust-test")


def post(client, body: dict) -> dict:
    response = client.post("/track", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def purchase(client, total: float, session: str = "s1") -> dict:
    return post(
        client,
        payload("locust-test", session={"id": session}, events=[{"type": "purchase", "properties": {"total": total}}]),
    )


def test_the_example_imports_as_written_and_exports_back(source):
    workflow = import_workflow(copy.deepcopy(EXAMPLE), user="test")
    assert workflow.published.number == 1
    [trigger] = workflow.triggers.all()
    assert (trigger.event_type, trigger.source_id) == ("purchase", "locust-test")
    exported = export_workflow(workflow)
    assert exported["nodes"] == EXAMPLE["nodes"] and exported["edges"] == EXAMPLE["edges"]
    assert exported["triggers"] == [EXAMPLE["trigger"]]
    again = import_workflow(exported, user="test")  # the same graph: no new version
    assert again.pk == workflow.pk and again.published.number == 1


def test_the_import_command_publishes_and_refuses_a_bad_file(source, tmp_path, capsys):
    good = tmp_path / "flow.json"
    good.write_text(json.dumps(EXAMPLE))
    call_command("workflow_import", str(good))
    assert "version 1 published" in capsys.readouterr().out
    call_command("workflow_import", str(good))  # the same graph makes no version
    assert ": unchanged, version 1, 1 trigger(s)." in capsys.readouterr().out
    bad = copy.deepcopy(EXAMPLE)
    bad["edges"].append({"from": "crm", "to": "tag"})
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(Exception, match="cycle"):
        call_command("workflow_import", str(tmp_path / "bad.json"))
    call_command("workflow_export", EXAMPLE["name"])
    assert json.loads(capsys.readouterr().out)["name"] == EXAMPLE["name"]


def test_a_bad_import_names_every_problem(source):
    bad = copy.deepcopy(EXAMPLE)
    bad["nodes"].append({"id": "start", "action": "start"})
    bad["trigger"]["source"] = "no-such-source"
    with pytest.raises(DefinitionInvalid) as refused:
        import_workflow(bad, user="test")
    assert "no-such-source" in str(refused.value)
    assert not Workflow.objects.exists()


def test_published_versions_are_immutable(source):
    workflow = import_workflow(copy.deepcopy(COUNTER), user="test")
    version = WorkflowVersion.objects.get(workflow=workflow)
    version.graph = {}
    with pytest.raises(ValueError, match="cannot change"):
        version.save()


def test_matching_events_run_the_published_version_once(client, source):
    workflow = import_workflow(copy.deepcopy(COUNTER), user="test")
    answer = purchase(client, 10)
    purchase(client, 20)
    run_everything()
    run_everything()  # nothing more to do: nothing runs twice
    profile = get_store().get("profile", answer["profile"]["id"])
    assert profile["stats"]["purchases"] == 2
    runs = WorkflowRun.objects.filter(workflow=workflow)
    assert runs.count() == 2 and all(r.status == RunStatus.OK and r.published for r in runs)
    assert [step["node_id"] for step in runs.first().trace] == ["start", "count"]


def test_a_condition_decides_and_once_per_profile_runs_once(client, source):
    definition = copy.deepcopy(COUNTER)
    definition["trigger"] = {
        "event_type": "purchase",
        "condition": {"path": "event@properties.total", "op": "gte", "value": 100},
        "once_per": "profile",
    }
    import_workflow(definition, user="test")
    answer = purchase(client, 50)
    run_everything()
    assert WorkflowRun.objects.count() == 0
    purchase(client, 150)
    purchase(client, 200)
    run_everything()
    assert WorkflowRun.objects.count() == 1
    assert get_store().get("profile", answer["profile"]["id"])["stats"]["purchases"] == 1


def test_a_failing_run_is_recorded_changes_nothing_and_the_next_runs_go_on(client, source):
    definition = copy.deepcopy(COUNTER)
    definition["nodes"].append({"id": "boom", "action": "throw_error", "config": {"message": "no stock"}})
    definition["edges"].append({"from": "count", "to": "boom"})
    import_workflow(definition, user="test")
    answer = purchase(client, 10)
    run_everything()
    [run] = WorkflowRun.objects.all()
    assert run.status == RunStatus.FAILED and "no stock" in run.error
    assert get_store().get("profile", answer["profile"]["id"])["stats"].get("purchases") is None


def test_workflows_of_one_event_run_in_priority_order_and_see_each_others_changes(client, source):
    first = {
        "name": "First",
        "trigger": {"event_type": "purchase", "priority": 1},
        "nodes": [{"id": "start", "action": "start"}, {"id": "t", "action": "add_tag", "config": {"tag": "first"}}],
        "edges": [{"from": "start", "to": "t"}],
    }
    second = {
        "name": "Second",
        "trigger": {"event_type": "purchase", "priority": 2},
        "nodes": [
            {"id": "start", "action": "start"},
            {"id": "if", "action": "if", "config": {"condition": {"path": "profile@tags", "op": "exists"}}},
            {"id": "t", "action": "add_tag", "config": {"tag": "second-saw-first"}},
        ],
        "edges": [{"from": "start", "to": "if"}, {"from": "if", "to": "t", "port": "true"}],
    }
    import_workflow(second, user="test")
    import_workflow(first, user="test")
    answer = purchase(client, 10)
    run_everything()
    runs = list(WorkflowRun.objects.order_by("id").values_list("workflow_name", flat=True))
    assert runs == ["First", "Second"]
    assert get_store().get("profile", answer["profile"]["id"])["tags"] == ["first", "second-saw-first"]


def test_a_disabled_trigger_or_an_unpublished_workflow_never_runs(client, source):
    workflow = import_workflow(copy.deepcopy(COUNTER), user="test")
    TriggerRule.objects.update(enabled=False)
    purchase(client, 1)
    run_everything()
    unpublished = Workflow.objects.create(name="Draft only", draft=copy.deepcopy(COUNTER) | {"name": None})
    TriggerRule.objects.create(workflow=unpublished, event_type="purchase")
    purchase(client, 1)
    run_everything()
    assert WorkflowRun.objects.count() == 0
    publish(workflow=workflow, user="test")


def send_pending() -> None:
    """What the django-q2 cluster does with the pending deliveries (its task, called here)."""
    from workflows.models import Delivery, DeliveryStatus
    from workflows.outbox import deliver

    for delivery in Delivery.objects.filter(status=DeliveryStatus.PENDING):
        deliver(delivery.id)


def test_destinations_get_events_of_their_type_and_changes_of_their_profile_fields(client, source, receiver):
    from tracking.models import EventMapping
    from workflows.models import Destination, DestinationTrigger

    Destination.objects.create(
        name="Orders", url=receiver.url, trigger=DestinationTrigger.EVENT, event_type="purchase",
        template={"order_total": "event@properties.total", "profile": "profile@id"},
    )  # fmt: skip
    Destination.objects.create(
        name="Emails", url=receiver.url, trigger=DestinationTrigger.PROFILE_FIELDS, profile_fields=["traits.email"]
    )
    EventMapping.objects.create(
        name="Email",
        event_type="identify",
        mappings=[{"event": "event@properties.email", "profile": "traits.email", "operation": "equals"}],
    )
    answer = purchase(client, 42, session="dest")
    post(client, payload("locust-test", session={"id": "dest"}, events=[{"type": "page-view"}]))
    identify = payload(
        "locust-test", session={"id": "dest"}, events=[{"type": "identify", "properties": {"email": "a@b.c"}}]
    )
    post(client, identify)
    post(client, identify)  # the same email again: no change, nothing sent
    run_everything()
    send_pending()
    bodies = sorted((json.loads(r.body) for r in receiver.received), key=lambda b: "changes" in b)
    assert bodies[0] == {"order_total": 42, "profile": answer["profile"]["id"]}
    assert bodies[1]["changes"] == {"traits.email": {"before": None, "after": "a@b.c"}}
    assert len(bodies) == 2
