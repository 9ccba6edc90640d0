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
    bridge = models.CharField(max_length=20, choices=BridgeType.choices, default=BridgeType.REST)
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
        help_text="Origins allowed to call /track from a browser (CORS), one per line; '*' allows any.",
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
