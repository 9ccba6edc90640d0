"""The Store interface (docs/architecture.md, sections 1 and 5); the backend is chosen by STORE_BACKEND."""

from __future__ import annotations

import abc
import base64
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

import orjson
from django.conf import settings

from storage.documents import FailedOperation
from storage.jobs import ProfileChange, SessionChange

Entity = Literal["profile", "session", "event"]

# Profiles read, changed and written per round trip within a batch. Each holds its windows
# of applied ids (about 24 KiB when full) a few times over while it is rewritten, and a
# batch of 500 messages may touch 500 profiles: rounds bound a batch's memory by this many
# profiles, whatever the batch size (bench/worker_memory.py --batch).
PROFILES_PER_WRITE = 100


def write_rounds(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    """`ids` in slices of PROFILES_PER_WRITE, in order: the rounds of a batch's profile writes."""
    for begin in range(0, len(ids), PROFILES_PER_WRITE):
        yield ids[begin : begin + PROFILES_PER_WRITE]


class StoreUnavailable(Exception):
    """The store cannot be reached or is overloaded; the writes may be retried as they are."""


@dataclass
class SaveResult:
    saved: int = 0
    # Document id -> why it was not saved; the messages carrying it are not acknowledged.
    errors: dict[str, str] = field(default_factory=dict)
    # Profile operations left out (the rest of their job was applied): logged, and noted
    # on their event.
    failed_operations: list[FailedOperation] = field(default_factory=list)
    # Profiles: id -> (document before, document after) of those this call changed, for what
    # acts on profile changes (destinations); `before` is None for a new profile.
    changed: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class BrowseFilters:
    """What the console's lists filter by; empty fields do not filter. Times bound the
    entity's time: a profile's creation, a session's start, an event's insert time."""

    id: str = ""
    type: str = ""
    source_id: str = ""
    profile_id: str = ""
    session_id: str = ""
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def used(self) -> set[str]:
        return {f.name for f in fields(self) if getattr(self, f.name) not in ("", None)}


BROWSE_FILTERS: dict[Entity, set[str]] = {
    "profile": {"id", "since", "until"},
    "session": {"id", "profile_id", "source_id", "since", "until"},
    "event": {"id", "type", "source_id", "profile_id", "session_id", "since", "until"},
}


def check_browse_filters(entity: Entity, filters: BrowseFilters) -> None:
    unknown = filters.used() - BROWSE_FILTERS[entity]
    if unknown:
        raise ValueError(f"cannot filter {entity}s by {', '.join(sorted(unknown))}")


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    # Opaque: pass it as `after` for the next page; None on the last page.
    next: str | None


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode()


def decode_cursor(cursor: str) -> list[Any]:
    """Raises ValueError for a cursor this store did not make."""
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise ValueError("invalid page cursor") from exc
    if not isinstance(values, list) or len(values) != 2:
        raise ValueError("invalid page cursor")
    return values


@dataclass(frozen=True)
class DeletedProfile:
    profiles: int
    sessions: int
    events: int


class Store(abc.ABC):
    @abc.abstractmethod
    def setup(self) -> None:
        """Creates indices, templates or tables the store needs; idempotent."""

    @abc.abstractmethod
    def apply_profile_changes(self, changes: Sequence[ProfileChange]) -> SaveResult:
        """Applies each change's operations in the given order, each job and each event's
        operations at most once; an operation that cannot be applied is reported in
        `failed_operations`, not as an error."""

    @abc.abstractmethod
    def save_sessions(self, changes: Sequence[SessionChange]) -> SaveResult:
        """Creates or merges sessions (context and properties merged, in the given order)."""

    @abc.abstractmethod
    def save_events(self, events: Sequence[dict[str, Any]]) -> SaveResult:
        """Inserts events by id; an event whose id is stored already is left as it is (a
        redelivery or a client's retry), and counts as saved."""

    @abc.abstractmethod
    def get(self, entity: Entity, id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def get_event(self, event_id: str, *, received_before: datetime | None = None) -> dict[str, Any] | None:
        """The event by id as soon as the write that stored it was acknowledged: durable and
        readable by id, before any search sees it (`get("event", ...)` is a search on
        Elasticsearch, which sees it only after the index's next refresh). `received_before`:
        a time at or after the API received the event (the time of its answer will do,
        default now); Elasticsearch reads the monthly index of that month and of the month
        before, so an event received just before a month ended is found."""

    @abc.abstractmethod
    def search(self, entity: Entity, *, limit: int = 100, **filters: str) -> list[dict[str, Any]]:
        """Newest first. Filters: profile_id, session_id, source_id and, for events, type."""

    @abc.abstractmethod
    def count(self, entity: Entity, **filters: str) -> int: ...

    @abc.abstractmethod
    def browse(
        self, entity: Entity, *, filters: BrowseFilters | None = None, page_size: int = 50, after: str | None = None
    ) -> Page:
        """Newest first by the entity's time, then id; keyset-paged (`after` is the previous
        page's `next`), so a deep page costs what the first does. ValueError for a filter
        the entity does not have or a bad cursor."""

    @abc.abstractmethod
    def delete_profile(self, profile_id: str) -> DeletedProfile:
        """Deletes the profile, its sessions and its events (everything stored until now)."""

    @abc.abstractmethod
    def refresh(self) -> None:
        """Makes every write so far visible to search and count (a search engine shows them
        within a second; tools and tests that read right after a write call this)."""

    def ping(self) -> None:
        """Raises unless the store answers (the /readyz check): one cheap read, no retries."""
        self.get("profile", "readiness-probe")


@functools.cache
def get_store() -> Store:
    if settings.STORE_BACKEND == "database":
        from storage.backends.database import DatabaseStore

        return DatabaseStore()
    if settings.STORE_BACKEND == "elasticsearch":
        from storage.backends.elasticsearch import ElasticsearchStore

        return ElasticsearchStore()
    raise RuntimeError(f"STORE_BACKEND={settings.STORE_BACKEND!r} has no implementation")
