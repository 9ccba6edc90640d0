"""Event sources and the identity registry."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


def parse_origins(text: str) -> list[str]:
    return [o.strip() for o in re.split(r"[\s,]+", text or "") if o.strip()]


def validate_origins(text: str) -> None:
    bad = [o for o in parse_origins(text) if o != "*" and not ORIGIN_RE.match(o)]
    if bad:
        raise ValidationError(
            "Not an origin: %(bad)s. Use '*' or scheme://host[:port], for example https://shop.example.com.",
            params={"bad": ", ".join(bad)},
        )


class BridgeType(models.TextChoices):
    REST = "rest", "REST API (/track)"
    # Systems that can only call a webhook post any JSON to /collect/{event_type}/{source_id}.
    WEBHOOK = "webhook", "Webhook (/collect/{event_type}/{source_id})"


class BotFilter(models.TextChoices):
    OFF = "off", "off: treat bots like anyone"
    REJECT = "reject", "reject: answer 401 to bots"
    MARK = "mark", "mark: store their events with bot: true"


class EventSource(models.Model):
    id = models.CharField(
        max_length=100,
        primary_key=True,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                "Use letters, digits, '.', '_' or '-', starting with a letter or digit (for example locust-test).",
            )
        ],
        help_text="The id clients send as source.id, for example locust-test.",
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    bridge = models.CharField(
        max_length=20,
        choices=BridgeType.choices,
        default=BridgeType.REST,
        help_text=(
            "REST: clients send /track payloads. Webhook: any JSON posted to /collect/{event_type}/{source id} "
            "becomes one event; /track refuses the source, as /collect refuses a REST source."
        ),
    )
    enabled = models.BooleanField(default=True)
    transitional = models.BooleanField(
        default=False,
        help_text="Ephemeral: events are processed, but neither the events nor the session are stored.",
    )
    static_profile_id = models.BooleanField(
        "trust static profile id",
        default=False,
        help_text="Use the profile.id the client sends instead of resolving the profile from the session.",
    )
    allowed_origins = models.TextField(
        default="*",
        blank=True,
        validators=[validate_origins],
        help_text=(
            "Origins allowed to call /track from a browser, one per line; '*' allows any, empty none. "
            "A request from another origin is refused with 403."
        ),
    )
    accept_without_origin = models.BooleanField(
        "accept requests without an Origin",
        default=True,
        help_text="When origins are listed: also accept requests that carry no Origin header (servers, apps).",
    )
    strict_validation = models.BooleanField(
        default=False,
        help_text="Reject a payload with an invalid event (422, nothing stored) instead of storing it marked invalid.",
    )
    bot_filter = models.CharField(
        max_length=10, choices=BotFilter.choices, default=BotFilter.OFF, help_text="What to do with traffic from bots."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class SessionIdentity(models.Model):
    """session id -> profile id. The unique key makes concurrent first requests agree."""

    session_id = models.CharField(max_length=255, primary_key=True)
    profile_id = models.CharField(max_length=255, db_index=True)
    source_id = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "session identities"


class Rule(models.Model):
    """What every pre-processing rule has: the event type it is for, and optionally a source."""

    name = models.CharField(max_length=200)
    event_type = models.CharField(max_length=255, db_index=True, help_text="The event type, e.g. purchase.")
    source = models.ForeignKey(
        EventSource,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="Only events from this source; empty: from every source.",
    )
    enabled = models.BooleanField(default=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["event_type", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.event_type})"


class ValidationTarget(models.TextChoices):
    PROPERTIES = "properties", "the event's properties"
    CONTEXT = "context", "the event's context"
    EVENT = "event", "the whole event"


class EventValidator(Rule):
    target = models.CharField(max_length=20, choices=ValidationTarget.choices, default=ValidationTarget.PROPERTIES)
    schema = models.JSONField(
        help_text='A JSON Schema (draft 2020-12), e.g. {"type": "object", "required": ["order_id"], '
        '"properties": {"order_id": {"type": "string"}, "total": {"type": "number", "minimum": 0}}}'
    )

    def clean(self) -> None:
        from tracking.rules.engine import check_schema

        try:
            check_schema(self.schema)
        except ValueError as exc:
            raise ValidationError({"schema": str(exc)}) from None


class EventReshaper(Rule):
    priority = models.IntegerField(default=100, help_text="Lower first; only the first matching rule applies.")
    properties_template = models.JSONField(
        help_text='The new properties. Strings like "event@properties.product.id" are read from the event, '
        '"payload@...", "session@..." or "profile@..."; anything else is kept as written. Example: '
        '{"product": "event@properties.product.id", "page": "payload@context.page.url", "kind": "sale"}'
    )
    keep_original_properties = models.BooleanField(
        default=False, help_text="Keep the original properties and add the template's on top."
    )
    context_template = models.JSONField(
        null=True, blank=True, help_text='Merged into the event\'s context, e.g. {"browser": "session@context.browser"}'
    )
    session_context_template = models.JSONField(
        null=True, blank=True, help_text='Merged into the session\'s context, e.g. {"campaign": "event@properties.utm"}'
    )

    class Meta(Rule.Meta):
        ordering = ["event_type", "priority", "name"]

    def clean(self) -> None:
        from tracking.rules.paths import check_template

        errors = {}
        for field in ("properties_template", "context_template", "session_context_template"):
            value = getattr(self, field)
            if field != "properties_template" and value is None:
                continue
            if not isinstance(value, dict):
                errors[field] = "Expected a JSON object."
                continue
            try:
                check_template(value)
            except ValueError as exc:
                errors[field] = str(exc)
        if errors:
            raise ValidationError(errors)


class EventMapping(Rule):
    condition = models.JSONField(
        null=True,
        blank=True,
        help_text='Optional. E.g. {"all": [{"path": "event@properties.total", "op": "gte", "value": 100}, '
        '{"path": "event@properties.currency", "op": "in", "value": ["EUR", "USD"]}]}; ops: equals, not_equals, '
        "exists, in, gt, gte, lt, lte; combine with all / any / not.",
    )
    mappings = models.JSONField(
        help_text='A list of {"event": <path>, "profile": <profile path>, "operation": <op>}, e.g. '
        '[{"event": "event@properties.email", "profile": "data.contact.email", "operation": "equals"}, '
        '{"event": "event@properties.total", "profile": "stats.spent", "operation": "increment"}]. '
        "Operations: equals, equals_if_not_exists, append, increment, add_tag. Profile paths start with data, "
        "traits, ids, stats, segments, interests, consents, aux or misc."
    )

    def clean(self) -> None:
        from tracking.rules.conditions import check_condition
        from tracking.rules.engine import check_mapping_conflicts, check_mappings

        errors = {}
        if self.condition is not None:
            try:
                check_condition(self.condition)
            except ValueError as exc:
                errors["condition"] = str(exc)
        try:
            check_mappings(self.mappings)
            if self.enabled:
                check_mapping_conflicts(self.mappings, self.overlapping_mappings())
        except ValueError as exc:
            errors["mappings"] = str(exc)
        if errors:
            raise ValidationError(errors)

    def overlapping_mappings(self) -> list[dict[str, str]]:
        """The mappings of the other enabled rules that may apply to the same events."""
        others = EventMapping.objects.filter(enabled=True, event_type=self.event_type).exclude(pk=self.pk)
        if self.source_id is not None:
            others = others.filter(models.Q(source__isnull=True) | models.Q(source_id=self.source_id))
        entries = [m for rule in others for m in rule.mappings if isinstance(m, dict)]
        return [m for m in entries if {"profile", "operation"} <= set(m)]
