"""OpenAPI description of POST /track (drf-spectacular), kept beside tracking/validation.py:
the request schema states the same rules, so a request valid by the schema passes the
validation (besides the event source, which must exist, and limits a schema cannot state:
nesting depth and key paths)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema

from tracking.validation import MAX_ID_LENGTH, MAX_KEY_LENGTH, MAX_SOURCE_ID_LENGTH, OPTION_DEFAULTS

NOT_BLANK = r"\S"  # the validation refuses strings of whitespace only

# A free-form object. OpenAPI 3.0 has no propertyNames: the rule on its keys is stated in words.
FREE_OBJECT: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "additionalProperties": True,
    "description": f"Keys of at most {MAX_KEY_LENGTH} characters, without U+0000; nesting up to TRACK_MAX_DEPTH.",
}


def _id(max_length: int, *, required: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": NOT_BLANK}
    return schema if required else {**schema, "nullable": True}


def _id_object(description: str) -> dict[str, Any]:
    return {
        **FREE_OBJECT,
        "description": description,
        "properties": {"id": _id(MAX_ID_LENGTH, required=False)},
    }


# Loosely typed: the validation parses the string (any ISO 8601 form Python reads) and checks
# the number's range itself, answering 422 with the path when it cannot.
EVENT_TIME = {
    "description": 'ISO 8601 time, epoch seconds or milliseconds, or {"create": <time>}.',
    "nullable": True,
    "oneOf": [
        {"type": "string"},
        {"type": "number"},
        {
            "type": "object",
            "additionalProperties": True,
            "properties": {"create": {"nullable": True, "oneOf": [{"type": "string"}, {"type": "number"}]}},
        },
    ],
}

EVENT = {
    **FREE_OBJECT,
    "nullable": False,
    "required": ["type"],
    "properties": {
        "id": {**_id(MAX_ID_LENGTH, required=False), "description": "The client's id of the event."},
        "type": _id(MAX_ID_LENGTH, required=True),
        "properties": FREE_OBJECT,
        "context": FREE_OBJECT,
        "options": {
            **FREE_OBJECT,
            # Untyped: only `false` means "not stored", any other value is kept as sent.
            "properties": {"save": {"description": "false: processed but not stored"}},
        },
        "tags": {"type": "array", "nullable": True, "items": _id(MAX_ID_LENGTH, required=True)},
        "time": EVENT_TIME,
    },
}


def track_request() -> dict[str, Any]:
    return {
        **FREE_OBJECT,
        "nullable": False,
        "required": ["source"],
        "properties": {
            "source": {
                **FREE_OBJECT,
                "nullable": False,
                "required": ["id"],
                "properties": {
                    "id": {
                        **_id(MAX_SOURCE_ID_LENGTH, required=True),
                        "description": "The id of an enabled event source.",
                        "example": "locust-test",
                    }
                },
            },
            "session": _id_object("The visitor's session; a new one when absent."),
            "profile": _id_object("The visitor's profile (see README, Sending events)."),
            # No maxItems: more than TRACK_MAX_EVENTS is refused with 413 (documented below),
            # which schema checkers do not count as a validation refusal.
            "events": {
                "type": "array",
                "nullable": True,
                "items": EVENT,
                "description": f"At most TRACK_MAX_EVENTS ({settings.TRACK_MAX_EVENTS}) events; more get 413.",
            },
            "context": FREE_OBJECT,
            "properties": FREE_OBJECT,
            "options": {
                **FREE_OBJECT,
                "properties": {
                    name: {"type": "boolean", "nullable": True, "default": d} for name, d in OPTION_DEFAULTS.items()
                },
            },
            "profile_less": {"type": "boolean", "nullable": True, "default": False},
        },
    }


SAVED_IDS = {
    "type": "object",
    "required": ["saved", "ids"],
    "properties": {"saved": {"type": "integer"}, "ids": {"type": "array", "items": {"type": "string"}}},
}

TRACK_RESPONSE = {
    "type": "object",
    "required": ["profile", "session", "events", "errors", "warnings", "ux", "response", "debugging"],
    "properties": {
        "profile": {
            "type": "object",
            "nullable": True,
            "additionalProperties": True,
            "description": "{id}, or the whole profile with options.profile",
            "properties": {"id": {"type": "string"}},
        },
        "session": {"type": "object", "nullable": True, "properties": {"id": {"type": "string"}}},
        "events": {"type": "array", "items": {"type": "string"}, "description": "stored ids, in payload order"},
        "errors": {"type": "array", "items": {}},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "ux": {"type": "array", "items": {}},
        "response": {"type": "object", "additionalProperties": True},
        "debugging": {
            "type": "object",
            "required": ["events", "session", "profile"],
            "properties": {
                "events": {
                    **SAVED_IDS,
                    "properties": {**SAVED_IDS["properties"], "errors": {"type": "array", "items": {}}},
                },
                "session": SAVED_IDS,
                "profile": SAVED_IDS,
            },
        },
        "task": {"type": "string", "description": "201 only: the collector task's id"},
    },
}

ERROR = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "request_id": {"type": "string", "description": "500 only"},
    },
}


def require_track_body(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: /track has no meaning without a body (an empty one is answered
    400), which drf-spectacular cannot say for a schema given as a dict."""
    body = result.get("paths", {}).get("/track", {}).get("post", {}).get("requestBody")
    if body is not None:
        body["required"] = True
    return result


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ERROR, description=description)


EXAMPLE = OpenApiExample(
    "Page view",
    value={
        "source": {"id": "locust-test"},
        "profile": {"id": "profile-id"},
        "session": {"id": "session-id"},
        "events": [{"type": "page-view", "properties": {"id": "string", "category": "string"}}],
        "context": {},
        "options": {},
    },
    request_only=True,
)


def track_schema() -> Any:
    """The decorator for TrackView.post."""
    return extend_schema(
        summary="Send events",
        description="Tracker payload (README: Sending events). The body is read as JSON whatever its content type; "
        "gzip and deflate Content-Encoding are accepted. 2xx only after the queue confirmed the write.",
        # Also sent as text/plain (sendBeacon) or any content type: the body is read as JSON.
        request={"application/json": track_request()},
        responses={
            200: OpenApiResponse(TRACK_RESPONSE, description="Processed by the API."),
            201: OpenApiResponse(TRACK_RESPONSE, description="Queued for the collector worker (`task`)."),
            400: _error("Not JSON, not UTF-8, NaN/infinite numbers, or corrupt compressed data."),
            401: _error("Unknown or disabled event source, or refused bot traffic."),
            403: _error("The Origin is not one the event source lists."),
            413: _error("Body over TRACK_MAX_BODY_BYTES, or more than TRACK_MAX_EVENTS events."),
            415: _error("Unsupported Content-Encoding."),
            422: _error("Wrong types or missing fields; `errors` has the JSON path of each."),
            500: _error("Never expected; quote `request_id`."),
            503: _error("The queue did not confirm the write; retry after Retry-After seconds."),
        },
        examples=[EXAMPLE],
        auth=[],
        tags=["tracking"],
    )


def webhook_schema() -> Any:
    """The decorator for WebhookView.post (the webhook bridge)."""
    return extend_schema(
        summary="Send one event from a webhook",
        description="Any JSON body becomes one event of `event_type` from the webhook-bridge source `source_id` "
        "(README: The webhook bridge); a body that is not an object is wrapped as {'value': ...}.",
        request={"application/json": {"description": "Any JSON value: the event's properties."}},
        parameters=[
            OpenApiParameter("session_id", str, description="The visitor's session, as session.id on /track."),
            OpenApiParameter("profile_id", str, description="A profile id this system issued, as profile.id."),
        ],
        responses={
            200: OpenApiResponse(TRACK_RESPONSE, description="Processed by the API."),
            400: _error("Not JSON, or corrupt compressed data."),
            401: _error("Unknown or disabled event source."),
            403: _error("Not a webhook-bridge source, or an Origin the source does not list."),
            413: _error("Body over TRACK_MAX_BODY_BYTES."),
            415: _error("Unsupported Content-Encoding."),
            422: _error("Keys or nesting no store could keep; `errors` has the JSON path of each."),
            500: _error("Never expected; quote `request_id`."),
            503: _error("The queue did not confirm the write; retry after Retry-After seconds."),
        },
        auth=[],
        tags=["tracking"],
    )
