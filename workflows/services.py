"""Running workflows for stored events: what the workflow worker does with each message.

A run's effects leave it the ways the rest of the platform already has: profile and
session changes as a storage job on system/functions (one way of writing a profile),
external calls as outbox deliveries (sent by django-q2, never here), later events through
the same processing as /track.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from queueing.broker import OutgoingMessage
from queueing.topics import FUNCTIONS, WORKFLOW
from storage.documents import new_profile
from storage.jobs import ProfileChange, SessionChange, StorageJob
from storage.store import Store
from storage.workers.background import Stored
from tracardi_site.contracts import SCHEMA_VERSION
from tracardi_site.jsonutil import deep_merge
from tracking.rules.paths import get_path
from workflows import selectors, telemetry
from workflows.engine.executor import RunContext, RunResult, delivery_key, run_graph
from workflows.engine.graph import GraphInvalid, parse_graph
from workflows.models import RunStatus, TriggerOnce, WorkflowRun

RUN_NAMESPACE = uuid.UUID("4d7c2a8e-93b1-4f3e-a6f0-1c2b3d4e5f60")


def run_key(*, event_id: str, trigger_id: int) -> str:
    """One run per event and trigger, whatever redeliveries happen."""
    return str(uuid.uuid5(RUN_NAMESPACE, f"{event_id}:{trigger_id}"))


def workflow_messages(stored: Stored) -> list[OutgoingMessage]:
    """For the background worker, after it stored a batch: one message per stored event
    that matches an enabled trigger or concerns a destination, keyed by profile (a
    profile's runs stay in order). A profile whose watched fields the batch changed goes
    with the batch's last event of that profile."""
    triggers = selectors.get_triggers()
    destinations = selectors.get_destination_index()
    if not triggers and not destinations.event_types and not destinations.profile_fields:
        return []
    last_event = {(e.get("profile") or {}).get("id"): e["id"] for e in stored.events}
    messages = []
    for event in stored.events:
        profile_id = (event.get("profile") or {}).get("id")
        matched = [t.id for t in selectors.matching_triggers(event, triggers)]
        payload: dict[str, Any] = {"v": SCHEMA_VERSION, "kind": "workflow", "event": event, "triggers": matched}
        if event.get("type") in destinations.event_types:
            payload["destinations"] = True
        change = stored.profiles.get(profile_id) if profile_id else None
        if change and last_event.get(profile_id) == event["id"] and _watched_change(change, destinations):
            payload["destinations"] = True
            payload["profile_change"] = {"before": change[0], "after": change[1]}
        if matched or payload.get("destinations"):
            key = profile_id or (event.get("session") or {}).get("id") or event["id"]
            messages.append(OutgoingMessage(topic=WORKFLOW, key=key, payload=payload))
    return messages


def _watched_change(change: tuple[dict | None, dict], destinations: selectors.DestinationIndex) -> bool:
    before, after = change
    return any(get_path(before or {}, f) != get_path(after, f) for f in destinations.profile_fields)


@dataclass
class BatchState:
    """What runs of one batch share: each profile and session as the runs before left them
    (the storage jobs they published are not stored yet), and what to publish."""

    store: Store
    profiles: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    jobs: list[OutgoingMessage] = field(default_factory=list)
    run_keys: list[str] = field(default_factory=list)

    def profile(self, profile_id: str | None) -> dict[str, Any] | None:
        if not profile_id:
            return None
        if profile_id not in self.profiles:
            self.profiles[profile_id] = self.store.get("profile", profile_id)
        return self.profiles[profile_id]

    def session(self, session_id: str | None) -> dict[str, Any] | None:
        if not session_id:
            return None
        if session_id not in self.sessions:
            self.sessions[session_id] = self.store.get("session", session_id)
        return self.sessions[session_id]


def run_message(payload: dict[str, Any], state: BatchState) -> None:
    """Runs the workflows one stored event triggered, one after another in priority order."""
    if payload.get("v") != SCHEMA_VERSION or payload.get("kind") != "workflow":
        raise ValueError(f"unsupported workflow message (v={payload.get('v')!r}, kind={payload.get('kind')!r})")
    event = payload["event"]
    current = {t.id: t for ts in selectors.get_triggers().values() for t in ts}
    for trigger_id in payload["triggers"]:
        trigger = current.get(trigger_id)
        if trigger is None:
            continue  # disabled or deleted since the event was stored
        runnable = selectors.get_runnable(trigger.workflow_id)
        if runnable is None:
            continue  # a disabled (or unpublished) workflow never runs
        run_one(event=event, trigger=trigger, runnable=runnable, state=state)
    if payload.get("destinations"):
        _deliver_to_destinations(event, payload.get("profile_change"), state)


def _deliver_to_destinations(event: dict[str, Any], change: dict[str, Any] | None, state: BatchState) -> None:
    """What the destinations receive for this event (and the profile change it closes). The
    keys make a redelivered message enqueue nothing twice."""
    from workflows.outbox import destination_deliveries, enqueue_delivery

    if change:
        before, after = change["before"], change["after"]
    else:  # templates may read the profile: the stored one, unchanged
        before = after = state.profile((event.get("profile") or {}).get("id"))
    planned = destination_deliveries(event=event, profile_before=before, profile_after=after)
    with transaction.atomic():
        for delivery in planned:
            enqueue_delivery(
                kind=delivery.kind,
                key=delivery.key,
                request=delivery.request,
                destination=delivery.destination,
                origin={"run_id": "", "workflow_name": f"destination {delivery.destination.name}", "node_id": ""},
            )


def run_one(
    *, event: dict[str, Any], trigger: selectors.Trigger, runnable: selectors.Runnable, state: BatchState
) -> None:
    key = run_key(event_id=event["id"], trigger_id=trigger.id)
    existing = WorkflowRun.objects.filter(run_key=key).only("published", "changes").first()
    if existing is not None:  # a redelivery: publish what the run changed if that did not happen
        if not existing.published and existing.changes:
            state.jobs.append(_job_message(existing.changes))
            state.run_keys.append(key)
        return
    profile_id = (event.get("profile") or {}).get("id")
    session_id = (event.get("session") or {}).get("id")
    profile = state.profile(profile_id)
    if profile_id and profile is None:
        profile = new_profile(profile_id, now=timezone.now().isoformat())
    session = state.session(session_id)
    started = timezone.now()
    clock = time.perf_counter()
    result = _execute(runnable, event=event, profile=profile, session=session, key=key, now=started.isoformat())
    result = _with_checked_deliveries(result)
    duration_ms = (time.perf_counter() - clock) * 1000
    changes = _changes(result, key=key, profile_id=profile_id, session=session, event=event, started=started)
    with transaction.atomic():
        if trigger.once_per and not _claim_once(trigger, event=event, key=key, now=started):
            return
        WorkflowRun.objects.create(
            run_key=key,
            workflow_id=runnable.workflow_id,
            workflow_name=runnable.name,
            version_id=runnable.version_id,
            version_number=runnable.version_number,
            trigger_id=trigger.id,
            event_id=event["id"],
            event_type=event.get("type", ""),
            profile_id=profile_id,
            session_id=session_id,
            status=RunStatus.OK if result.status == "ok" else RunStatus.FAILED,
            error=result.error or "",
            started_at=started,
            duration_ms=duration_ms,
            trace=[_jsonable(t) for t in result.trace],
            changes=changes,
            published=changes is None,
        )
        outcome = RunStatus.OK if result.status == "ok" else RunStatus.FAILED
        # Counted once the batch's transaction commits: a rolled-back run is run again.
        transaction.on_commit(lambda: telemetry.record_run(str(outcome)))
        if result.status == "ok" and result.deliveries:
            _enqueue_deliveries(result, key=key, runnable=runnable)
        if result.status == "ok" and result.scheduled:
            _schedule_events(result, key=key, event=event)
    if changes is not None:
        state.jobs.append(_job_message(changes))
        state.run_keys.append(key)
        _remember(result, state=state, profile_id=profile_id, session_id=session_id)


def _execute(
    runnable: selectors.Runnable,
    *,
    event: dict[str, Any],
    profile: dict[str, Any] | None,
    session: dict[str, Any] | None,
    key: str,
    now: str,
) -> RunResult:
    try:
        graph = parse_graph(runnable.graph)
    except GraphInvalid as exc:  # published before a rule got stricter: recorded, never raised
        return _failed(f"the published graph is invalid: {'; '.join(exc.messages)}")
    context = RunContext(
        event=event,
        profile=copy.deepcopy(profile),
        session=copy.deepcopy(session),
        payload={},
        memory={},
        run_key=key,
        now=now,
    )
    return run_graph(graph, context)


def _with_checked_deliveries(result: RunResult) -> RunResult:
    """A request the outbox would refuse (a bad URL rendered from the event) fails the run,
    which then changes nothing, rather than the message."""
    from workflows.outbox import check_request

    for delivery in result.deliveries if result.status == "ok" else []:
        try:
            check_request(delivery.kind, delivery.request)
        except ValueError as exc:
            return dataclasses.replace(
                result, status="failed", error=f"node {delivery.node_id}: the {delivery.kind} request is invalid: {exc}"
            )
    return result


def _failed(error: str) -> RunResult:
    return RunResult(
        status="failed", error=error, trace=[], profile_operations=[], session_context={}, session_properties={},
        deliveries=[], scheduled=[], logs=[], memory={}, changed=False,
    )  # fmt: skip


def _changes(
    result: RunResult,
    *,
    key: str,
    profile_id: str | None,
    session: dict[str, Any] | None,
    event: dict[str, Any],
    started: Any,
) -> dict[str, Any] | None:
    """The storage job of a run, as a message payload; None when the run changes nothing
    (a failed run changes nothing either: a run applies whole or not at all)."""
    if result.status != "ok":
        return None
    profile = ProfileChange(profile_id, key, list(result.profile_operations)) if profile_id else None
    if profile is not None and not profile.operations:
        profile = None
    session_change = None
    if session is not None and (result.session_context or result.session_properties):
        session_change = SessionChange(
            id=session["id"],
            profile_id=profile_id,
            source_id=(event.get("source") or {}).get("id") or (session.get("source") or {}).get("id", ""),
            time=started.isoformat(),
            context=result.session_context,
            properties=result.session_properties,
        )
    if profile is None and session_change is None:
        return None
    return StorageJob(job_id=key, profile=profile, session=session_change, events=[]).to_payload()


def _job_message(changes: dict[str, Any]) -> OutgoingMessage:
    key = (changes.get("profile") or {}).get("id") or (changes.get("session") or {}).get("id")
    return OutgoingMessage(topic=FUNCTIONS, key=key, payload=changes)


def _remember(
    result: RunResult,
    *,
    state: BatchState,
    profile_id: str | None,
    session_id: str | None,
) -> None:
    """Later runs of this batch see this run's changes before they are stored."""
    if profile_id and result.profile is not None:
        state.profiles[profile_id] = result.profile
    session = state.sessions.get(session_id) if session_id else None
    if session is not None:
        deep_merge(session.setdefault("context", {}), result.session_context)
        deep_merge(session.setdefault("properties", {}), result.session_properties)


def _claim_once(trigger: selectors.Trigger, *, event: dict[str, Any], key: str, now: Any) -> bool:
    """Trigger-once: the first run for a profile (or session) claims it until the TTL ends."""
    scope = (event.get(trigger.once_per) or {}).get("id")
    if not scope:
        return False
    expires = now + timedelta(seconds=trigger.once_ttl_seconds) if trigger.once_ttl_seconds else None
    claim = TriggerOnce.objects.filter(trigger_id=trigger.id, scope_key=scope).first()
    if claim is not None:
        if claim.expires_at is None or claim.expires_at > now:
            return False
        claim.run_key, claim.expires_at = key, expires
        claim.save(update_fields=["run_key", "expires_at"])
        return True
    try:
        with transaction.atomic():
            TriggerOnce.objects.create(trigger_id=trigger.id, scope_key=scope, run_key=key, expires_at=expires)
    except IntegrityError:
        return False
    return True


def _enqueue_deliveries(result: RunResult, *, key: str, runnable: selectors.Runnable) -> None:
    from workflows.outbox import enqueue_delivery

    for request in result.deliveries:
        enqueue_delivery(
            kind=request.kind,
            key=delivery_key(key, request.node_id, request.request),
            request=request.request,
            origin={"run_id": key, "workflow_name": runnable.name, "node_id": request.node_id},
        )


def _schedule_events(result: RunResult, *, key: str, event: dict[str, Any]) -> None:
    from workflows.scheduled import schedule_event

    for scheduled in result.scheduled:
        schedule_event(scheduled, run_key=key, event=event)


def _jsonable(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def mark_published(run_keys: list[str]) -> None:
    WorkflowRun.objects.filter(run_key__in=run_keys).update(published=True, changes=None)
