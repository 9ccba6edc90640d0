"""The django-q2 task that makes one attempt of a delivery: deliver(delivery_id)."""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from workflows import telemetry
from workflows.models import Delivery, DeliveryKind, DeliveryStatus
from workflows.outbox.scheduling import queue_after_commit
from workflows.outbox.senders import Outcome, send_email, send_http
from workflows.outbox.services import record_destination_failure, record_destination_success

logger = logging.getLogger(__name__)

# A task may reach a worker a little before its row's time (clocks of two hosts); earlier
# than this, it is not this attempt's task and the row's own task or the sweep sends it.
EARLY_TOLERANCE = timedelta(seconds=1)


def backoff_seconds(attempt: int) -> float:
    """The wait after failed attempt number `attempt` (1-based): base doubling per attempt,
    capped, with "equal jitter" (half fixed, half random) so receivers that fail together
    are not hit again all at the same moment."""
    ceiling = min(settings.OUTBOX_RETRY_MAX_SECONDS, settings.OUTBOX_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def claim(delivery_id: int) -> Delivery | None:
    """Moves a due pending delivery to "sending" and counts the attempt; None if it is not
    due, not pending, or another task claimed it first. The conditional UPDATE (status and
    attempt count unchanged since read) is what keeps two tasks from sending one delivery,
    on SQLite and MySQL alike."""
    delivery = Delivery.objects.select_related("destination").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    now = timezone.now()
    if delivery.next_attempt_at > now + EARLY_TOLERANCE:
        return None
    unchanged = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts)
    if delivery.destination is not None and delivery.destination.paused:
        unchanged.update(status=DeliveryStatus.PAUSED, updated_at=now)
        return None
    if not unchanged.update(status=DeliveryStatus.SENDING, attempts=delivery.attempts + 1, updated_at=now):
        return None
    delivery.status, delivery.attempts, delivery.updated_at = DeliveryStatus.SENDING, delivery.attempts + 1, now
    return delivery


def effective_request(delivery: Delivery) -> dict[str, Any]:
    """A destination's delivery is sent to the destination's current URL, method and headers:
    fixing a wrong URL and resuming the destination then sends its held deliveries right."""
    request = dict(delivery.request)
    destination = delivery.destination
    if destination is not None:
        request.update(url=destination.url, method=destination.method, headers=dict(destination.headers or {}))
    return request


def attempt(delivery: Delivery) -> Outcome:
    request = effective_request(delivery)
    if delivery.kind == DeliveryKind.EMAIL:
        return send_email(request, key=delivery.key)
    return send_http(request, key=delivery.key)


def record(delivery: Delivery, outcome: Outcome) -> str:
    """Stores the attempt's result and schedules the next one. Returns the new status."""
    now = timezone.now()
    fields: dict[str, Any] = {"last_status_code": outcome.status_code, "updated_at": now}
    if outcome.ok:
        status = DeliveryStatus.DELIVERED
        fields.update(last_error="", delivered_at=now)
    elif outcome.transient:
        delay = outcome.retry_after if outcome.retry_after is not None else backoff_seconds(delivery.attempts)
        next_at = now + timedelta(seconds=delay)
        if next_at > delivery.retry_until:
            status = DeliveryStatus.FAILED
            fields["last_error"] = f"{outcome.error} (no attempt left in the retry window)"
        else:
            status = DeliveryStatus.PENDING
            fields.update(last_error=outcome.error, next_attempt_at=next_at)
    else:
        status = DeliveryStatus.FAILED
        fields["last_error"] = outcome.error
    with transaction.atomic():
        mine = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=delivery.attempts)
        if not mine.update(status=status, **fields):
            # The sweep took the row back as cut off; its new attempt decides.
            return delivery.status
        if delivery.destination_id is not None:
            if status == DeliveryStatus.DELIVERED:
                record_destination_success(delivery.destination_id)
            elif status == DeliveryStatus.FAILED:
                record_destination_failure(delivery.destination_id, fields["last_error"])
        if status == DeliveryStatus.PENDING:
            # Held instead when the destination was paused meanwhile.
            held = Delivery.objects.filter(pk=delivery.pk, status=status, destination__paused=True)
            if delivery.destination_id is not None and held.update(status=DeliveryStatus.PAUSED):
                status = DeliveryStatus.PAUSED
            else:
                queue_after_commit(delivery.pk, fields["next_attempt_at"])
    telemetry.record_delivery(str(delivery.kind), str(status))
    log = logger.info if status in (DeliveryStatus.DELIVERED, DeliveryStatus.PENDING) else logger.warning
    log(
        "Delivery %d (%s %s) attempt %d: %s%s",
        delivery.pk, delivery.kind, delivery.target, delivery.attempts, status,
        f": {fields.get('last_error')}" if fields.get("last_error") else "",
    )  # fmt: skip
    return status


def deliver(delivery_id: int) -> str:
    """The django-q2 task: one attempt of the delivery, if it is due and nobody else is
    sending it. Returns the delivery's status afterwards (shown in django-q2's results)."""
    delivery = claim(delivery_id)
    if delivery is None:
        return "skipped"
    try:
        outcome = attempt(delivery)
    except Exception as exc:
        # A bug, or a request that cannot be sent at all: dead with the reason, not a
        # task failing again and again with the row stuck in "sending".
        logger.exception("Delivery %d: the attempt raised", delivery.pk)
        outcome = Outcome.dead(f"{type(exc).__name__}: {exc}")
    return record(delivery, outcome)
