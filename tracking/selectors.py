"""Reads the API does on every request, cached in-process for at most SOURCE_CACHE_SECONDS.

A disabled source or a changed worker setting takes effect within that time, without
a database query per request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.conf import settings

from queueing.models import WorkerSettings, WorkerType
from tracking.models import EventMapping, EventReshaper, EventSource, EventValidator, SessionIdentity, parse_origins
from tracking.rules.engine import RuleSet

T = TypeVar("T")


class TTLCache(Generic[T]):
    """A small thread-safe LRU whose entries expire; unknown keys are cached too (bounded),
    unless `keep` says a loaded value is not to be kept."""

    def __init__(
        self, *, ttl: Callable[[], float], max_entries: int = 10_000, keep: Callable[[T], bool] = lambda _: True
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._keep = keep
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[str], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit and hit[0] > now:
                self._items.move_to_end(key)
                return hit[1]
        value = load(key)
        if not self._keep(value):
            return value
        with self._lock:
            self._items[key] = (now + self._ttl(), value)
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass(frozen=True)
class SourceSnapshot:
    id: str
    enabled: bool
    transitional: bool
    static_profile_id: bool
    allowed_origins: tuple[str, ...]
    strict_validation: bool = False
    bot_filter: str = "off"
    accept_without_origin: bool = True
    bridge: str = "rest"

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin in self.allowed_origins

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "enabled": self.enabled,
            "transitional": self.transitional,
            "static_profile_id": self.static_profile_id,
            "allowed_origins": list(self.allowed_origins),
            "strict_validation": self.strict_validation,
            "bot_filter": self.bot_filter,
            "accept_without_origin": self.accept_without_origin,
            "bridge": self.bridge,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SourceSnapshot:
        return cls(**{**data, "allowed_origins": tuple(data["allowed_origins"])})


def _ttl() -> float:
    return settings.SOURCE_CACHE_SECONDS


_sources: TTLCache[SourceSnapshot | None] = TTLCache(ttl=_ttl)
_collector_enabled: TTLCache[bool] = TTLCache(ttl=_ttl, max_entries=1)
_preflight: TTLCache[bool] = TTLCache(ttl=_ttl, max_entries=1000)
_rules: TTLCache[RuleSet] = TTLCache(ttl=_ttl, max_entries=1)


def _load_source(source_id: str) -> SourceSnapshot | None:
    source = EventSource.objects.filter(id=source_id).first()
    if source is None:
        return None
    return SourceSnapshot(
        id=source.id,
        enabled=source.enabled,
        transitional=source.transitional,
        static_profile_id=source.static_profile_id,
        allowed_origins=tuple(parse_origins(source.allowed_origins)),
        strict_validation=source.strict_validation,
        bot_filter=source.bot_filter,
        accept_without_origin=source.accept_without_origin,
        bridge=source.bridge,
    )


def get_source(*, source_id: str) -> SourceSnapshot | None:
    return _sources.get(source_id, _load_source)


def any_source_allows_origin(*, origin: str) -> bool:
    """For CORS preflights, which carry no body and so no source id."""

    def load(_key: str) -> bool:
        return any(
            "*" in parse_origins(text) or origin in parse_origins(text)
            for text in EventSource.objects.filter(enabled=True).values_list("allowed_origins", flat=True)
        )

    return _preflight.get(origin, load)


def collector_enabled() -> bool:
    def load(_key: str) -> bool:
        row = WorkerSettings.objects.filter(worker_type=WorkerType.COLLECTOR).first()
        return bool(row and row.enabled)

    return _collector_enabled.get("collector", load)


def get_rules() -> RuleSet:
    """The enabled pre-processing rules, compiled."""

    def load(_key: str) -> RuleSet:
        return RuleSet.compile(
            validators=EventValidator.objects.filter(enabled=True),
            reshapers=EventReshaper.objects.filter(enabled=True),
            mappings=EventMapping.objects.filter(enabled=True),
        )

    return _rules.get("rules", load)


# session id -> profile id of registered sessions. The registry never changes a session's
# profile once written, so the API reads it once per process instead of once per request
# (it was 15 % of a request). Only found sessions are kept: an unknown one must be
# registered. Bounded in size, and in time so a profile deleted (GDPR) stops being named.
KNOWN_SESSION_SECONDS = 60.0
_known_sessions: TTLCache[str | None] = TTLCache(
    ttl=lambda: KNOWN_SESSION_SECONDS, max_entries=100_000, keep=lambda profile_id: profile_id is not None
)


def known_profile(session_id: str) -> str | None:
    def load(_key: str) -> str | None:
        return SessionIdentity.objects.filter(session_id=session_id).values_list("profile_id", flat=True).first()

    return _known_sessions.get(session_id, load)


def clear_caches() -> None:
    for cache in (_sources, _collector_enabled, _preflight, _rules, _known_sessions):
        cache.clear()
