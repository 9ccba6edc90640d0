"""Recording deliveries, replaying dead ones, pausing and resuming destinations."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from workflows.models import Delivery, DeliveryKind, DeliveryStatus, Destination
from workflows.models.outbox import check_http_url
from workflows.outbox.scheduling import queue_after_commit

logger = logging.getLogger(__name__)

ORIGIN_FIELDS = {"run_id": "run_id", "workflow_name": "workflow_name", "node_id": "node_id"}
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def retry_window_end(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=settings.OUTBOX_RETRY_WINDOW_SECONDS)


def check_request(kind: str, request: Any) -> None:
    """Raises ValueError naming what is wrong: a bad request must fail the caller, not turn
    into a dead delivery hours later."""
    if not isinstance(request, dict):
        raise ValueError("request: expected an object")
    if kind == DeliveryKind.HTTP:
        check_http_url(request.get("url"))
        if request.get("method", "POST") not in HTTP_METHODS:
            raise ValueError(f"request.method: one of {', '.join(sorted(HTTP_METHODS))}")
        headers = request.get("headers") or {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("request.headers: expected an object of header names to strings")
    elif kind == DeliveryKind.EMAIL:
        to = request.get("to")
        recipients = to if isinstance(to, list) else [to]
        if not recipients or not all(isinstance(r, str) and "@" in r for r in recipients):
            raise ValueError("request.to: expected an e-mail address or a non-empty list of them")
        for field in ("subject", "body"):
            if not isinstance(request.get(field, ""), str):
                raise ValueError(f"request.{field}: expected a string")
    else:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(DeliveryKind.values)}")


def enqueue_delivery(
    *,
    kind: str,
    key: str,
    request: dict[str, Any],
    destination: Destination | None = None,
    origin: dict[str, str] | None = None,
) -> Delivery:
    """Records an external call, to be made by django-q2 once the caller's transaction
    commits. Idempotent: a second call with the same key returns the first delivery and
    queues nothing (a redelivered workflow message records nothing twice). A delivery to a
    paused destination is stored as paused and sent when the destination is resumed."""
    if not isinstance(key, str) or not key or len(key) > 255:
        raise ValueError("key: expected a non-empty string of at most 255 characters")
    check_request(kind, request)
    origin = origin or {}
    unknown = set(origin) - set(ORIGIN_FIELDS)
    if unknown:
        raise ValueError(f"origin: unexpected keys {', '.join(sorted(unknown))}; use {', '.join(ORIGIN_FIELDS)}")
    paused = destination is not None and Destination.objects.filter(pk=destination.pk, paused=True).exists()
    now = timezone.now()
    delivery, created = Delivery.objects.get_or_create(
        key=key,
        defaults={
            "kind": kind,
            "request": request,
            "destination": destination,
            "status": DeliveryStatus.PAUSED if paused else DeliveryStatus.PENDING,
            "next_attempt_at": now,
            "retry_until": retry_window_end(now),
            **{ORIGIN_FIELDS[name]: str(value)[:200] for name, value in origin.items()},
        },
    )
    if created and delivery.status == DeliveryStatus.PENDING:
        queue_after_commit(delivery.pk)
    return delivery


def _requeue(deliveries: QuerySet[Delivery], *, from_status: str) -> int:
    """Moves `from_status` deliveries back to pending with a fresh retry window and queues them."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(deliveries.filter(status=from_status).values_list("pk", flat=True))
        Delivery.objects.filter(pk__in=ids, status=from_status).update(
            status=DeliveryStatus.PENDING, next_attempt_at=now, retry_until=retry_window_end(now), updated_at=now
        )
        # A dead delivery of a paused destination waits for the destination's resume.
        Delivery.objects.filter(pk__in=ids, destination__paused=True).update(status=DeliveryStatus.PAUSED)
        for delivery_id in Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING).values_list(
            "pk", flat=True
        ):
            queue_after_commit(delivery_id)
    return len(ids)


def replay(deliveries: Iterable[Delivery] | QuerySet[Delivery]) -> int:
    """Dead deliveries back to pending, each with a fresh retry window; others are left
    alone. Returns how many were replayed."""
    if not isinstance(deliveries, QuerySet):
        deliveries = Delivery.objects.filter(pk__in=[d.pk for d in deliveries])
    return _requeue(deliveries, from_status=DeliveryStatus.FAILED)


def replay_all_dead() -> int:
    return replay(Delivery.objects.all())


def resume_destination(destination: Destination) -> int:
    """Unpauses the destination and queues its paused deliveries again. Returns how many."""
    with transaction.atomic():
        Destination.objects.filter(pk=destination.pk).update(
            paused=False, paused_reason="", paused_at=None, consecutive_failures=0, updated_at=timezone.now()
        )
        count = _requeue(Delivery.objects.filter(destination_id=destination.pk), from_status=DeliveryStatus.PAUSED)
    destination.refresh_from_db()
    logger.info("Destination %r resumed; %d paused deliveries queued again", destination.name, count)
    return count


def record_destination_success(destination_id: int) -> None:
    Destination.objects.filter(pk=destination_id, consecutive_failures__gt=0).update(consecutive_failures=0)


def record_destination_failure(destination_id: int, error: str) -> bool:
    """Counts a dead delivery; pauses the destination (and its pending deliveries) at
    OUTBOX_PAUSE_AFTER_FAILURES in a row. Returns whether it was paused now."""
    Destination.objects.filter(pk=destination_id).update(consecutive_failures=F("consecutive_failures") + 1)
    threshold = settings.OUTBOX_PAUSE_AFTER_FAILURES
    if not threshold:
        return False
    now = timezone.now()
    paused = Destination.objects.filter(pk=destination_id, paused=False, consecutive_failures__gte=threshold).update(
        paused=True,
        paused_reason=f"{threshold} deliveries in a row failed; the last: {error}"[:2000],
        paused_at=now,
        updated_at=now,
    )
    if paused:
        held = Delivery.objects.filter(destination_id=destination_id, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.PAUSED, updated_at=now
        )
        logger.warning(
            "Destination %d paused after %d failed deliveries in a row; %d pending deliveries held",
            destination_id, threshold, held,
        )  # fmt: skip
    return bool(paused)
