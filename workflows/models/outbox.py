"""The outbox: every external call (HTTP request, e-mail) as a row, sent later by django-q2.

A workflow records a Delivery in the same transaction as its run, so a call is made if and
only if the run's results were stored; workflows/outbox/ sends, retries and pauses."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from django.core.exceptions import ValidationError
from django.db import models

__all__ = ["Delivery", "DeliveryKind", "DeliveryStatus", "Destination", "DestinationTrigger", "HttpMethod"]


class DeliveryKind(models.TextChoices):
    HTTP = "http", "HTTP request"
    EMAIL = "email", "e-mail"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SENDING = "sending", "sending"
    DELIVERED = "delivered", "delivered"
    FAILED = "failed", "dead"
    PAUSED = "paused", "paused"


class HttpMethod(models.TextChoices):
    POST = "POST", "POST"
    PUT = "PUT", "PUT"
    PATCH = "PATCH", "PATCH"


class DestinationTrigger(models.TextChoices):
    EVENT = "event", "an event of a type"
    PROFILE_FIELDS = "profile_fields", "a change of profile fields"


def check_http_url(url: Any) -> str:
    """Raises ValueError unless `url` is an absolute http(s) URL with a host."""
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    return url


class Destination(models.Model):
    """A remote endpoint that receives events of a type, or changes of profile fields."""

    name = models.CharField(max_length=200, unique=True)
    enabled = models.BooleanField(default=True)
    # A CharField: URLField's form would guess a scheme for "example.com"; an exact URL is required.
    url = models.CharField(max_length=2000, help_text="An http:// or https:// URL.")
    method = models.CharField(max_length=10, choices=HttpMethod.choices, default=HttpMethod.POST)
    headers = models.JSONField(
        default=dict, blank=True, help_text='Sent with every call, e.g. {"Authorization": "Bearer ..."}.'
    )
    trigger = models.CharField(max_length=20, choices=DestinationTrigger.choices, default=DestinationTrigger.EVENT)
    event_type = models.CharField(max_length=255, blank=True, db_index=True, help_text="For an event trigger.")
    source = models.ForeignKey(
        "tracking.EventSource",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="For an event trigger: only events from this source; empty: from every source.",
    )
    profile_fields = models.JSONField(
        default=list,
        blank=True,
        help_text="For a profile trigger: the profile paths whose change is sent, "
        'e.g. ["traits.email", "data.pii.name"].',
    )
    condition = models.JSONField(
        null=True,
        blank=True,
        help_text='Optional, the rules\' format, e.g. {"path": "event@properties.total", "op": "gte", "value": 100}.',
    )
    template = models.JSONField(
        null=True,
        blank=True,
        help_text='The body sent; "event@...", "profile@..." strings are replaced by values, e.g. '
        '{"email": "profile@traits.email", "total": "event@properties.total"}. Empty: the event and the profile.',
    )
    # Auto-pause: set by the outbox after OUTBOX_PAUSE_AFTER_FAILURES dead deliveries in a row.
    consecutive_failures = models.PositiveIntegerField(default=0)
    paused = models.BooleanField(default=False)
    paused_reason = models.TextField(blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from tracking.rules.conditions import check_condition
        from tracking.rules.paths import check_profile_path, check_template

        errors: dict[str, str] = {}
        try:
            check_http_url(self.url)
        except ValueError as exc:
            errors["url"] = str(exc)
        if not isinstance(self.headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            errors["headers"] = "Expected a JSON object of header names to string values."
        if self.trigger == DestinationTrigger.EVENT and not self.event_type:
            errors["event_type"] = "An event trigger needs the event type."
        if self.trigger == DestinationTrigger.PROFILE_FIELDS:
            if not isinstance(self.profile_fields, list) or not self.profile_fields:
                errors["profile_fields"] = "A profile trigger needs a non-empty list of profile paths."
            else:
                try:
                    for path in self.profile_fields:
                        check_profile_path(path)
                except ValueError as exc:
                    errors["profile_fields"] = str(exc)
        if self.condition is not None:
            try:
                check_condition(self.condition)
            except ValueError as exc:
                errors["condition"] = str(exc)
        if self.template is not None:
            try:
                check_template(self.template)
            except ValueError as exc:
                errors["template"] = str(exc)
        if errors:
            raise ValidationError(errors)


class Delivery(models.Model):
    """One external call and its progress. `key` makes recording it idempotent."""

    kind = models.CharField(max_length=10, choices=DeliveryKind.choices)
    key = models.CharField(
        max_length=255, unique=True, help_text="Idempotency key (run + node + payload hash), sent as Idempotency-Key."
    )
    request = models.JSONField(
        help_text="http: {method, url, headers, body}; email: {to, subject, body}.",
    )
    destination = models.ForeignKey(
        Destination, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    # Where it came from: plain strings, so the outbox does not depend on the flow tables.
    run_id = models.CharField(max_length=100, blank=True, db_index=True)
    workflow_name = models.CharField(max_length=200, blank=True)
    node_id = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(help_text="When a pending delivery is tried next.")
    retry_until = models.DateTimeField(help_text="After this, a failing delivery is dead instead of retried.")
    last_error = models.TextField(blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set explicitly by every conditional UPDATE too: a "sending" row's age tells a crash.
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at"]
        indexes = [
            # The sweep's "due pending" and "stale sending" queries.
            models.Index(fields=["status", "next_attempt_at"], name="outbox_due_idx"),
            models.Index(fields=["status", "updated_at"], name="outbox_status_updated_idx"),
            # Pausing and resuming a destination's deliveries.
            models.Index(fields=["destination", "status"], name="outbox_destination_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.target} ({self.get_status_display()})"

    @property
    def target(self) -> str:
        if not isinstance(self.request, dict):
            return ""
        if self.kind == DeliveryKind.EMAIL:
            to = self.request.get("to")
            return ", ".join(to) if isinstance(to, list) else str(to or "")
        return str(self.request.get("url") or "")
