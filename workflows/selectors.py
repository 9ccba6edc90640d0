"""Reads of the workflow tables the workers do on every batch, cached for at most
SOURCE_CACHE_SECONDS: a trigger switched off or a workflow published takes effect within
that time, without a query per event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracking.rules.conditions import matches
from tracking.selectors import ttl_cached
from workflows.models import TriggerRule, Workflow, WorkflowVersion


@dataclass(frozen=True)
class Trigger:
    id: int
    workflow_id: int
    event_type: str
    source_id: str | None
    condition: dict[str, Any] | None
    priority: int
    once_per: str
    once_ttl_seconds: int | None


@dataclass(frozen=True)
class Runnable:
    """What a run needs of a workflow: its published version, if it is enabled."""

    workflow_id: int
    name: str
    version_id: int
    version_number: int
    graph: dict[str, Any]


@dataclass(frozen=True)
class DestinationIndex:
    """What the enabled destinations listen to, to tell cheaply whether an event or a
    profile change concerns any of them."""

    event_types: frozenset[str]
    profile_fields: frozenset[str]


@ttl_cached(1)
def get_triggers() -> dict[str, list[Trigger]]:
    """The enabled triggers of enabled, published workflows, by event type, in priority order."""
    rows = TriggerRule.objects.filter(enabled=True, workflow__enabled=True, workflow__published__isnull=False).order_by(
        "priority", "id"
    )
    by_type: dict[str, list[Trigger]] = {}
    for row in rows:
        by_type.setdefault(row.event_type, []).append(
            Trigger(
                id=row.id,
                workflow_id=row.workflow_id,
                event_type=row.event_type,
                source_id=row.source_id,
                condition=row.condition,
                priority=row.priority,
                once_per=row.once_per,
                once_ttl_seconds=row.once_ttl_seconds,
            )
        )
    return by_type


def matching_triggers(event: dict[str, Any], triggers: dict[str, list[Trigger]]) -> list[Trigger]:
    """The triggers an event matches: its type, its source, the condition on the event."""
    candidates = triggers.get(event.get("type"), [])
    source_id = (event.get("source") or {}).get("id")
    return [
        t
        for t in candidates
        if (t.source_id is None or t.source_id == source_id) and matches(t.condition, {"event": event})
    ]


@ttl_cached(10_000)
def get_runnable(workflow_id: int) -> Runnable | None:
    """The published version of an enabled workflow; None when it is disabled, unpublished or gone."""
    workflow = Workflow.objects.filter(id=workflow_id, enabled=True).select_related("published").first()
    version: WorkflowVersion | None = workflow.published if workflow else None
    if version is None:
        return None
    return Runnable(workflow.id, workflow.name, version.id, version.number, version.graph)


@ttl_cached(1)
def get_destination_index() -> DestinationIndex:
    from workflows.models import Destination, DestinationTrigger

    rows = Destination.objects.filter(enabled=True).values_list("trigger", "event_type", "profile_fields")
    types = {t for kind, t, _ in rows if kind == DestinationTrigger.EVENT and t}
    fields = {f for kind, _, fs in rows if kind == DestinationTrigger.PROFILE_FIELDS for f in fs or []}
    return DestinationIndex(frozenset(types), frozenset(fields))


def clear_caches() -> None:
    for function in (get_destination_index, get_triggers, get_runnable):
        function.cache_clear()


@dataclass(frozen=True)
class RunStats:
    runs: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None


def run_stats(*, workflow_id: int, since: Any) -> RunStats:
    """Runs, failures and duration percentiles of a workflow's runs since a time."""
    from workflows.models import RunStatus, WorkflowRun

    rows = WorkflowRun.objects.filter(workflow_id=workflow_id, started_at__gte=since)
    durations = sorted(rows.values_list("duration_ms", flat=True))
    failures = rows.filter(status=RunStatus.FAILED).count()

    def percentile(q: float) -> float | None:
        return durations[min(len(durations) - 1, int(q * len(durations)))] if durations else None

    return RunStats(len(durations), failures, percentile(0.5), percentile(0.95))
