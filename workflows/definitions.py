"""Publishing, rolling back, importing and exporting workflows, and test runs on samples."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from storage.documents import new_profile
from storage.store import get_store
from tracking.models import EventSource
from workflows import selectors
from workflows.engine.executor import RunContext, RunResult, run_graph
from workflows.engine.graph import GraphInvalid, graph_checksum, parse_graph
from workflows.models import TriggerRule, Workflow, WorkflowVersion

TRIGGER_FIELDS = {"event_type", "source", "condition", "priority", "enabled", "once_per", "once_ttl_seconds", "name"}


class DefinitionInvalid(ValueError):
    """A workflow file or draft that cannot be saved; `messages` says every reason."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def graph_of(data: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": data.get("nodes", []), "edges": data.get("edges", [])}


@transaction.atomic
def publish(*, workflow: Workflow, user: str) -> WorkflowVersion:
    """Publishes the draft as a new immutable version, which triggers then run. Publishing a
    draft equal to the published version changes nothing."""
    try:
        parse_graph(workflow.draft)
    except GraphInvalid as exc:
        raise DefinitionInvalid(list(exc.messages)) from None
    graph = graph_of(workflow.draft)
    checksum = graph_checksum(graph)
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    if workflow.published is not None and workflow.published.checksum == checksum:
        return workflow.published
    number = (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = WorkflowVersion.objects.create(
        workflow=workflow, number=number, graph=graph, checksum=checksum, published_by=user
    )
    workflow.published = version
    workflow.save(update_fields=["published", "updated_at"])
    selectors.clear_caches()
    return version


def rollback(*, workflow: Workflow, version: WorkflowVersion) -> None:
    """Points the workflow at an earlier version; the draft is left as it is."""
    if version.workflow_id != workflow.pk:
        raise DefinitionInvalid([f"version {version.number} belongs to another workflow"])
    workflow.published = version
    workflow.save(update_fields=["published", "updated_at"])
    selectors.clear_caches()


def _trigger_values(data: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise DefinitionInvalid([f"{where}: expected an object"])
    unknown = set(data) - TRIGGER_FIELDS
    if unknown:
        raise DefinitionInvalid([f"{where}: unknown keys {', '.join(sorted(unknown))}"])
    values = dict(data)
    source_id = values.pop("source", None)
    if source_id is not None:
        if not EventSource.objects.filter(id=source_id).exists():
            raise DefinitionInvalid([f"{where}.source: there is no event source {source_id!r}"])
        values["source_id"] = source_id
    values.setdefault("once_per", "")
    return values


@transaction.atomic
def import_workflow(data: Any, *, user: str) -> Workflow:
    """Creates or updates (by name) a workflow from the JSON format, publishes it, and
    replaces its triggers with the file's (`trigger` or `triggers`)."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"].strip():
        raise DefinitionInvalid(['a workflow file is an object with a "name", "nodes" and "edges"'])
    unknown = set(data) - {"name", "description", "enabled", "trigger", "triggers", "nodes", "edges"}
    if unknown:
        raise DefinitionInvalid([f"unknown keys {', '.join(sorted(unknown))}"])
    raw = data.get("triggers", [data["trigger"]] if "trigger" in data else [])
    if not isinstance(raw, list):
        raise DefinitionInvalid(["triggers: expected a list"])
    triggers = [_trigger_values(t, f"triggers[{i}]") for i, t in enumerate(raw)]
    workflow, _ = Workflow.objects.get_or_create(name=data["name"].strip())
    workflow.description = data.get("description", workflow.description)
    workflow.enabled = data.get("enabled", workflow.enabled)
    workflow.draft = graph_of(data)
    try:
        workflow.full_clean()
    except ValidationError as exc:
        raise DefinitionInvalid([m for ms in exc.message_dict.values() for m in ms]) from None
    workflow.save()
    publish(workflow=workflow, user=user)
    workflow.triggers.all().delete()
    for index, values in enumerate(triggers):
        trigger = TriggerRule(workflow=workflow, **values)
        try:
            trigger.full_clean()
        except ValidationError as exc:
            messages = [f"triggers[{index}].{field}: {m}" for field, ms in exc.message_dict.items() for m in ms]
            raise DefinitionInvalid(messages) from None
        trigger.save()
    selectors.clear_caches()
    return Workflow.objects.get(pk=workflow.pk)


def export_workflow(workflow: Workflow, *, draft: bool = False) -> dict[str, Any]:
    """The JSON format of the published version (or the draft), with its triggers."""
    graph = workflow.draft if draft or workflow.published is None else workflow.published.graph
    triggers = []
    for trigger in workflow.triggers.all():
        values = {"event_type": trigger.event_type}
        if trigger.name:
            values["name"] = trigger.name
        if trigger.source_id:
            values["source"] = trigger.source_id
        if trigger.condition is not None:
            values["condition"] = trigger.condition
        if trigger.priority != 100:
            values["priority"] = trigger.priority
        if not trigger.enabled:
            values["enabled"] = False
        if trigger.once_per:
            values["once_per"] = trigger.once_per
            values["once_ttl_seconds"] = trigger.once_ttl_seconds
        triggers.append(values)
    exported: dict[str, Any] = {"name": workflow.name}
    if workflow.description:
        exported["description"] = workflow.description
    if not workflow.enabled:
        exported["enabled"] = False
    exported["triggers"] = triggers
    return exported | graph_of(graph)


def test_run(*, workflow: Workflow, event: dict[str, Any]) -> RunResult:
    """Runs the draft on a sample event, as a dry run: nothing is sent, nothing is written.
    The profile and session are the stored ones the event names (or new, empty ones)."""
    graph = parse_graph(workflow.draft)
    store = get_store()
    profile_id = (event.get("profile") or {}).get("id")
    session_id = (event.get("session") or {}).get("id")
    now = timezone.now().isoformat()
    profile = store.get("profile", profile_id) if profile_id else None
    if profile_id and profile is None:
        profile = new_profile(profile_id, now=now)
    context = RunContext(
        event=event,
        profile=profile,
        session=store.get("session", session_id) if session_id else None,
        payload={},
        memory={},
        run_key=f"test-{uuid.uuid4()}",
        now=now,
    )
    return run_graph(graph, context, dry_run=True)
