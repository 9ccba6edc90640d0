"""Events a workflow schedules for later (the schedule_event action): a django-q2 task
emits them, at their time, through the same processing as /track, in the session and
profile of the event that triggered the run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from queueing.broker import get_broker
from tracking import selectors as tracking_selectors
from tracking import services as tracking_services
from tracking.validation import validate_track_payload

EMIT = "workflows.scheduled.emit_event"


def schedule_event(scheduled: Any, *, run_key: str, event: dict[str, Any]) -> None:
    """Called inside the run's transaction: the task exists only if the run was recorded."""
    body = {
        "source": {"id": (event.get("source") or {}).get("id")},
        "session": {"id": (event.get("session") or {}).get("id")},
        "profile": {"id": (event.get("profile") or {}).get("id")},
        # The client id makes the emitted event's stored id fixed: a task run twice stores it once.
        "events": [{"id": f"{run_key}:{scheduled.node_id}", "type": scheduled.event_type,
                    "properties": scheduled.properties}],
    }  # fmt: skip
    if scheduled.delay_seconds <= 0:
        transaction.on_commit(lambda: async_task(EMIT, body))
    else:
        Schedule.objects.create(
            func=EMIT,
            args=repr((body,)),
            schedule_type=Schedule.ONCE,
            next_run=timezone.now() + timedelta(seconds=scheduled.delay_seconds),
            name=f"event {scheduled.event_type} of run {run_key} node {scheduled.node_id}"[:100],
        )


def emit_event(body: dict[str, Any]) -> list[str]:
    """The django-q2 task: processes the event as /track would, and returns its stored id."""
    source = tracking_selectors.get_source(source_id=body["source"]["id"])
    if source is None:
        raise ValueError(f"event source {body['source']['id']!r} no longer exists")
    payload = validate_track_payload(body)
    meta = tracking_services.RequestMeta(ip=None, headers={}, received_at=timezone.now().isoformat())
    result = tracking_services.track(
        broker=get_broker(), source=source, payload=payload, meta=meta, rules=tracking_selectors.get_rules()
    )
    return result.event_ids
