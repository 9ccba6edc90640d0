"""Validation of the /track payload, with the JSON path of every error.

Hand-written rather than DRF serializers or a JSON Schema library: this runs for every event
of every request, and field-by-field serializers cost about ten times as much (1.3 ms of a
5.6 ms one-event request, 0.1 ms per event after that); bench/api_ratio.py measures the
request path it is part of, and tests/tracking/test_track_api.py and
tests/tracking/test_hostile_input.py hold its answers (the JSON path of each error, a 4xx
and never a 500 for hostile input). The result is the normalized payload
the processing reads: defaults filled in. An event's id is the client's (or None) until
`tracking.services.assign_event_ids` gives it its stored id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MAX_ID_LENGTH = 255
MAX_SOURCE_ID_LENGTH = 100
OPTION_DEFAULTS = {"queue": False, "saveSession": True, "saveEvents": True, "saveProfile": True, "profile": False}
TIME_MESSAGE = 'Expected an ISO 8601 time, epoch seconds or milliseconds, or {"create": <time>}.'
# Epoch values above this are milliseconds (it is 5138 AD in seconds, 1973 in milliseconds).
EPOCH_MILLISECONDS_FROM = 10**11

JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}


class PayloadInvalid(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


def json_type(value: Any) -> str:
    return "null" if value is None else JSON_TYPES.get(type(value), type(value).__name__)


class _Checker:
    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})

    def object(self, value: Any, path: str) -> dict[str, Any]:
        """An object; null or absent is {}."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"Expected an object but got {json_type(value)}.")
            return {}
        return value

    def string(self, value: Any, path: str, *, max_length: int, required: bool) -> str | None:
        if value is None:
            if required:
                self.error(path, "This field is required.")
            return None
        if not isinstance(value, str):
            self.error(path, f"Expected a string but got {json_type(value)}.")
            return None
        if not value.strip():
            self.error(path, "This field may not be blank.")
            return None
        if len(value) > max_length:
            self.error(path, f"Ensure this field has no more than {max_length} characters.")
            return None
        return value

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(path, f"Expected a boolean but got {json_type(value)}.")
            return default
        return value

    def id_object(self, value: Any, path: str) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(path, f"Expected an object but got {json_type(value)}.")
            return None
        return {**value, "id": self.string(value.get("id"), f"{path}.id", max_length=MAX_ID_LENGTH, required=False)}

    def time(self, value: Any, path: str) -> str | None:
        """The client's create time, as ISO 8601 UTC: a time string, epoch seconds or
        milliseconds, or Tracardi's time object ({"create": ...}; its other keys are the
        server's to set, and ignored)."""
        if isinstance(value, dict):
            value, path = value.get("create"), f"{path}.create"
        if value is None:
            return None
        try:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int | float):
                seconds = value / 1000 if abs(value) >= EPOCH_MILLISECONDS_FROM else value
                moment = datetime.fromtimestamp(seconds, tz=UTC)
            elif isinstance(value, str):
                moment = datetime.fromisoformat(value)
                moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
            else:
                raise ValueError
        except (ValueError, OverflowError, OSError):
            self.error(path, TIME_MESSAGE)
            return None
        return moment.isoformat()

    def event(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(path, f"Expected an object but got {json_type(value)}.")
            return {}
        tags = value.get("tags")
        if tags is None:
            tags = []
        elif not isinstance(tags, list):
            self.error(f"{path}.tags", f"Expected an array but got {json_type(tags)}.")
            tags = []
        else:
            for index, tag in enumerate(tags):
                self.string(tag, f"{path}.tags[{index}]", max_length=MAX_ID_LENGTH, required=True)
        return {
            **value,
            "id": self.string(value.get("id"), f"{path}.id", max_length=MAX_ID_LENGTH, required=False),
            "type": self.string(value.get("type"), f"{path}.type", max_length=MAX_ID_LENGTH, required=True),
            "properties": self.object(value.get("properties"), f"{path}.properties"),
            "context": self.object(value.get("context"), f"{path}.context"),
            "options": self.object(value.get("options"), f"{path}.options"),
            "tags": tags,
            "time": self.time(value.get("time"), f"{path}.time"),
        }


# Object keys: search engines index a key with its path, and refuse U+0000 in it (their
# separator) or a path longer than their term limit (32 KiB): refused here, so what /track
# accepts every store can keep.
MAX_KEY_LENGTH = 256
MAX_KEY_PATH_LENGTH = 8000  # characters; at most 4 bytes each, under the 32 KiB limit


def check_structure(data: Any, *, max_depth: int) -> dict[str, str] | None:
    """The first structural problem of a parsed payload, as {path, message}, or None:
    nesting deeper than `max_depth` (the top level is depth 1), a key that is too long or
    holds U+0000, or keys that add up to too long a path. Iterative: it must not itself
    hit a recursion limit. It visits every key of every request, so a path is built only
    for a container to visit or a problem to name."""
    containers = (dict, list)
    stack: list[tuple[Any, str, int, int]] = [(data, "$", 1, 0)] if isinstance(data, containers) else []
    while stack:
        value, path, depth, key_path = stack.pop()
        if depth > max_depth:
            return {"path": path, "message": f"Nested deeper than TRACK_MAX_DEPTH ({max_depth} levels)."}
        if isinstance(value, dict):
            for key, child in value.items():
                if len(key) > MAX_KEY_LENGTH or "\x00" in key:
                    return {
                        "path": f"{path}.{key}"[: len(path) + 80],
                        "message": f"A key must have at most {MAX_KEY_LENGTH} characters and no U+0000.",
                    }
                if key_path + len(key) > MAX_KEY_PATH_LENGTH:
                    return {"path": path, "message": f"The keys of this path exceed {MAX_KEY_PATH_LENGTH} characters."}
                if isinstance(child, containers):
                    stack.append((child, f"{path}.{key}", depth + 1, key_path + len(key) + 1))
        else:
            stack.extend(
                (child, f"{path}[{index}]", depth + 1, key_path)
                for index, child in enumerate(value)
                if isinstance(child, containers)
            )
    return None


def validate_track_payload(data: dict[str, Any]) -> dict[str, Any]:
    """Returns the normalized payload, or raises PayloadInvalid listing every error."""
    check = _Checker()
    source = data.get("source")
    if source is None:
        check.error("$.source", "This field is required.")
    elif not isinstance(source, dict):
        check.error("$.source", f"Expected an object but got {json_type(source)}.")
    else:
        check.string(source.get("id"), "$.source.id", max_length=MAX_SOURCE_ID_LENGTH, required=True)

    events = data.get("events")
    if events is None:
        events = []
    elif not isinstance(events, list):
        check.error("$.events", f"Expected an array but got {json_type(events)}.")
        events = []

    options = check.object(data.get("options"), "$.options")
    payload = {
        **data,
        "session": check.id_object(data.get("session"), "$.session"),
        "profile": check.id_object(data.get("profile"), "$.profile"),
        "events": [check.event(event, f"$.events[{i}]") for i, event in enumerate(events)],
        "context": check.object(data.get("context"), "$.context"),
        "properties": check.object(data.get("properties"), "$.properties"),
        "options": {
            **options,
            **{
                name: check.boolean(options.get(name), f"$.options.{name}", default)
                for name, default in OPTION_DEFAULTS.items()
            },
        },
        "profile_less": check.boolean(data.get("profile_less"), "$.profile_less", False),
    }
    if check.errors:
        raise PayloadInvalid(check.errors)
    return payload
