"""Reads for the console's dead-letter and stored-data pages (console/deadletters.py,
console/data.py): query parameters in, what the templates show out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.http import QueryDict

from queueing.broker import Broker, DeadLetter
from queueing.topics import MAIN_TOPICS, Topic
from storage.store import BROWSE_FILTERS, BrowseFilters, Entity, Page, Store

PAGE_SIZE = 50
DEAD_LETTER_TOPICS: dict[str, Topic] = {t.name: t for t in MAIN_TOPICS}
# URL segment -> entity.
ENTITIES: dict[str, Entity] = {"profiles": "profile", "sessions": "session", "events": "event"}
FILTER_LABELS = {
    "id": "Id",
    "type": "Event type",
    "source_id": "Source",
    "profile_id": "Profile",
    "session_id": "Session",
    "since": "From (UTC)",
    "until": "Until (UTC)",
}


def pretty(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=str)


# --- dead letters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterRow:
    letter: DeadLetter
    payload_json: str


def dead_letter_page(*, broker: Broker, topic: Topic, search: str, page: int) -> tuple[list[DeadLetterRow], bool]:
    """One page of dead letters, and whether there is a next one."""
    letters = broker.dead_letters(topic, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE, search=search)
    rows = [DeadLetterRow(letter, pretty(letter.payload)) for letter in letters[:PAGE_SIZE]]
    return rows, len(letters) > PAGE_SIZE


def page_number(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


# --- stored data ----------------------------------------------------------------------------


class BadFilter(ValueError):
    """A filter of the search form that cannot be used; its message says which and why."""


def _moment(label: str, value: str) -> datetime:
    """An ISO date or time from the form (a datetime-local input sends no zone: UTC)."""
    try:
        moment = datetime.fromisoformat(value)
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: a zone that moves it out of years 1-9999
        raise BadFilter(f"{label}: enter a date and time such as 2026-11-30T05:00 (UTC), not {value[:40]!r}.") from None


def filters_from(entity: Entity, query: QueryDict) -> BrowseFilters:
    """The filters this entity has, from the query string; the rest is ignored. Raises
    BadFilter for a time that is not one."""
    values: dict[str, Any] = {}
    for name in BROWSE_FILTERS[entity]:
        raw = (query.get(name) or "").strip()
        if not raw:
            continue
        values[name] = _moment(FILTER_LABELS[name], raw) if name in ("since", "until") else raw
    return BrowseFilters(**values)


def filter_fields(entity: Entity, query: QueryDict) -> list[dict[str, str]]:
    """The search form's fields, in a fixed order, with what was typed."""
    return [
        {
            "name": name,
            "label": label,
            "value": query.get(name, ""),
            "kind": "time" if name in ("since", "until") else "text",
        }
        for name, label in FILTER_LABELS.items()
        if name in BROWSE_FILTERS[entity]
    ]


def browse_page(*, store: Store, entity: Entity, query: QueryDict) -> Page:
    """Raises BadFilter for a bad filter, ValueError for a bad cursor."""
    return store.browse(
        entity, filters=filters_from(entity, query), page_size=PAGE_SIZE, after=query.get("after") or None
    )


def _get(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def flags(event: dict[str, Any]) -> list[str]:
    """Validation flags worth a glance: invalid, and profile operations left out."""
    metadata = event.get("metadata") or {}
    shown = []
    if metadata.get("valid") is False:
        shown.append("invalid")
    if metadata.get("failed_operations"):
        shown.append(f"{len(metadata['failed_operations'])} failed operation(s)")
    return shown


def list_row(entity: Entity, document: dict[str, Any]) -> dict[str, Any]:
    """The columns of one list row."""
    if entity == "profile":
        return {
            "id": document.get("id"),
            "time": _get(document, "metadata.time.create"),
            "updated": _get(document, "metadata.time.update"),
            "events": _get(document, "stats.events"),
            "visits": _get(document, "metadata.time.visit.count"),
        }
    if entity == "session":
        return {
            "id": document.get("id"),
            "time": _get(document, "metadata.time.insert"),
            "updated": _get(document, "metadata.time.update"),
            "profile_id": _get(document, "profile.id"),
            "source_id": _get(document, "source.id"),
        }
    return {
        "id": document.get("id"),
        "time": _get(document, "metadata.time.insert"),
        "type": document.get("type"),
        "profile_id": _get(document, "profile.id"),
        "session_id": _get(document, "session.id"),
        "source_id": _get(document, "source.id"),
        "flags": flags(document),
    }


def related(entity: Entity, document: dict[str, Any], *, store: Store) -> dict[str, Any]:
    """What a detail page links to: the profile, the session, the latest sessions and events."""
    if entity == "profile":
        profile_id = document.get("id")
        return {
            "sessions": store.browse("session", filters=BrowseFilters(profile_id=profile_id), page_size=10).items,
            "events": store.browse("event", filters=BrowseFilters(profile_id=profile_id), page_size=10).items,
        }
    if entity == "session":
        return {
            "profile_id": _get(document, "profile.id"),
            "events": store.browse("event", filters=BrowseFilters(session_id=document.get("id")), page_size=10).items,
        }
    return {"profile_id": _get(document, "profile.id"), "session_id": _get(document, "session.id")}
