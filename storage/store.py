"""The Store interface (DESIGN.md section 2); the backend is chosen by STORE_BACKEND."""

from __future__ import annotations

import abc
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings

from storage.documents import FailedOperation
from storage.jobs import ProfileChange, SessionChange

Entity = Literal["profile", "session", "event"]


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
    def search(self, entity: Entity, *, limit: int = 100, **filters: str) -> list[dict[str, Any]]:
        """Newest first. Filters: profile_id, session_id, source_id and, for events, type."""

    @abc.abstractmethod
    def count(self, entity: Entity, **filters: str) -> int: ...

    @abc.abstractmethod
    def refresh(self) -> None:
        """Makes every write so far visible to search and count (a search engine shows them
        within a second; tools and tests that read right after a write call this)."""


@functools.cache
def get_store() -> Store:
    if settings.STORE_BACKEND == "database":
        from storage.backends.database import DatabaseStore

        return DatabaseStore()
    if settings.STORE_BACKEND == "elasticsearch":
        from storage.backends.elasticsearch import ElasticsearchStore

        return ElasticsearchStore()
    raise RuntimeError(f"STORE_BACKEND={settings.STORE_BACKEND!r} has no implementation")
