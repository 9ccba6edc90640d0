"""What the enabled destinations should receive for one stored event and profile change."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from tracking.rules.conditions import matches
from tracking.rules.paths import get_path, render
from workflows.models import DeliveryKind, Destination, DestinationTrigger


@dataclass(frozen=True)
class PlannedDelivery:
    """Arguments for enqueue_delivery(kind=..., key=..., request=..., destination=...)."""

    destination: Destination
    kind: str
    key: str
    request: dict[str, Any]


def delivery_key(*parts: object, payload: Any) -> str:
    """A key from the parts that identify the cause and a hash of what is sent: the same
    cause sending the same payload again is the same delivery."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    return ":".join([*(str(p) for p in parts), digest])[:255]


def changed_fields(paths: list[str], before: dict | None, after: dict | None) -> dict[str, dict[str, Any]]:
    """The listed profile paths whose value differs; a new profile changes every set path."""
    changes = {}
    for path in paths:
        old, new = get_path(before or {}, path), get_path(after or {}, path)
        if old != new:
            changes[path] = {"before": old, "after": new}
    return changes


def _planned(destination: Destination, *, event: dict, body: Any) -> PlannedDelivery:
    # URL, method and headers are taken from the destination when sending (see
    # delivery.effective_request); the copy here shows where it was going, without secrets.
    request = {"method": destination.method, "url": destination.url, "headers": {}, "body": body}
    key = delivery_key("destination", destination.pk, event.get("id") or "", payload=body)
    return PlannedDelivery(destination=destination, kind=DeliveryKind.HTTP, key=key, request=request)


def destination_deliveries(
    *, event: dict[str, Any], profile_before: dict[str, Any] | None, profile_after: dict[str, Any] | None
) -> list[PlannedDelivery]:
    """For the enabled destinations: an event trigger matches the event's type and source
    and its condition; a profile trigger matches a change of one of its profile fields and
    its condition. The body is the destination's template rendered with the event and the
    profile (after the change), or by default the event and the profile."""
    sources = {"event": event, "profile": profile_after}
    source_id = (event.get("source") or {}).get("id")
    planned = []
    by_event = Destination.objects.filter(
        enabled=True, trigger=DestinationTrigger.EVENT, event_type=event.get("type")
    ).filter(Q(source__isnull=True) | Q(source_id=source_id))
    for destination in by_event:
        if matches(destination.condition, sources):
            body = render(destination.template, sources) if destination.template is not None else sources
            planned.append(_planned(destination, event=event, body=body))
    if profile_after is not None:
        for destination in Destination.objects.filter(enabled=True, trigger=DestinationTrigger.PROFILE_FIELDS):
            changes = changed_fields(destination.profile_fields, profile_before, profile_after)
            if changes and matches(destination.condition, sources):
                body = (
                    render(destination.template, sources)
                    if destination.template is not None
                    else {"profile": profile_after, "changes": changes}
                )
                planned.append(_planned(destination, event=event, body=body))
    return planned
