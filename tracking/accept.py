"""What /track decides about a verified, well-formed payload: reject it (422 under strict
validation), process it in the API or queue it for the collector, and what to answer.
The views keep to HTTP (reading the body, the source checks, CORS, the status line);
every bridge (/track, the webhook bridge) goes through `accept`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rest_framework import status

from queueing.broker import Broker
from tracking import selectors, services
from tracking.selectors import SourceSnapshot

COLLECTOR_DISABLED_WARNING = (
    "options.queue was requested but the collector worker is disabled (worker.collector.enabled is false); "
    "the payload was processed by the API instead."
)
NO_EVENTS_WARNING = "The payload has no events; nothing was stored."
NOTHING_SAVED = {
    "events": {"saved": 0, "errors": [], "ids": []},
    "session": {"saved": 0, "ids": []},
    "profile": {"saved": 0, "ids": []},
}


class TrackError(Exception):
    """A payload refused with a 4xx: nothing of it was accepted."""

    def __init__(
        self, status_code: int, detail: str, errors: list[dict[str, str]] | None = None, prefix: str = ""
    ) -> None:
        self.status_code, self.detail, self.errors, self.prefix = status_code, detail, errors, prefix

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail} | ({"errors": self.errors} if self.errors else {})

    def with_paths(self, rename: Callable[[str], str]) -> TrackError:
        """The same refusal with every error's path renamed (the webhook bridge names the
        parts of its URL and body the client sent, not the payload built from them)."""
        if not self.errors:
            return self
        return invalid([{**e, "path": rename(e["path"])} for e in self.errors], self.prefix)


def invalid(errors: list[dict[str, str]], prefix: str = "Invalid payload") -> TrackError:
    """422 whose detail names the first problem: clients that show only `detail` (Tracardi's
    SDK does) still tell their user what to fix."""
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return TrackError(
        status.HTTP_422_UNPROCESSABLE_ENTITY, f"{prefix}: {first['path']}: {first['message']}{more}", errors, prefix
    )


@dataclass(frozen=True)
class Outcome:
    """An accepted payload: 200 processed by the API, 201 queued for the collector."""

    status_code: int
    body: dict[str, Any]


def answer(
    *,
    profile: dict[str, Any] | None,
    session: str | None,
    events: list[str],
    debugging: dict[str, Any],
    warnings: list[str] | None = None,
    task: str | None = None,
    status_code: int = status.HTTP_200_OK,
) -> Outcome:
    """Tracardi's response body."""
    body = {
        "profile": profile,
        "session": {"id": session} if session else None,
        "events": events,
        "errors": [],
        "warnings": warnings or [],
        "ux": [],
        "response": {},
        "debugging": debugging,
    }
    if task:
        body["task"] = task
    return Outcome(status_code, body)


def accept(*, broker: Broker, source: SourceSnapshot, payload: dict[str, Any], meta: services.RequestMeta) -> Outcome:
    """Validates the events against the rules, then processes or queues the payload; returns
    only after the broker confirmed. Raises TrackError (422) when a strict source's payload
    has an invalid event, and lets BrokerUnavailable through (the view answers 503)."""
    if not payload["events"]:
        profile_id = (payload.get("profile") or {}).get("id")
        return answer(
            profile={"id": profile_id} if profile_id else None,
            session=(payload.get("session") or {}).get("id"),
            events=[],
            warnings=[NO_EVENTS_WARNING],
            debugging=NOTHING_SAVED,
        )
    rules = selectors.get_rules()  # one snapshot for the validation and the processing
    validation = services.validate_events(source=source, payload=payload, rules=rules)
    errors = services.with_payload_paths(validation)
    if errors and source.strict_validation:
        raise invalid(errors, "Invalid event; this event source stores nothing from an invalid payload")
    warnings = [f"{e['path']}: {e['message']}" for e in errors]
    queued = payload["options"]["queue"] and selectors.collector_enabled()
    if payload["options"]["queue"] and not queued:
        warnings.append(COLLECTOR_DISABLED_WARNING)
    if queued:
        result = services.enqueue(broker=broker, source=source, payload=payload, meta=meta)
    else:
        result = services.track(
            broker=broker, source=source, payload=payload, meta=meta, rules=rules, validation=validation
        )
    identity = result.identity
    profile = {"id": identity.profile_id} if identity.profile_id else None
    if profile and payload["options"]["profile"]:
        profile = services.profile_after(source=source, payload=payload, meta=meta, result=result, rules=rules)
    return answer(
        profile=profile,
        session=identity.session_id,
        events=result.event_ids,
        warnings=warnings,
        task=result.task_id,
        debugging=services.debugging_summary(source=source, payload=payload, result=result),
        status_code=status.HTTP_201_CREATED if queued else status.HTTP_200_OK,
    )
