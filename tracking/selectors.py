"""Reads the API does on every request, cached in-process for at most SOURCE_CACHE_SECONDS.

A disabled source or a changed worker setting takes effect within that time, without
a database query per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cachetools import TTLCache, cached
from django.conf import settings

from queueing.models import WorkerSettings, WorkerType
from storage.models import ProfileTombstone
from tracking.models import EventMapping, EventReshaper, EventSource, EventValidator, SessionIdentity, parse_origins
from tracking.rules.engine import RuleSet

F = TypeVar("F", bound=Callable)


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

    @classmethod
    def from_dict(cls, data: dict) -> SourceSnapshot:
        return cls(**{**data, "allowed_origins": tuple(data["allowed_origins"])})


def ttl_cached(max_entries: int) -> Callable[[F], F]:
    """Caches a function's results per process: an LRU of `max_entries` whose entries expire
    after SOURCE_CACHE_SECONDS (unknown keys are cached too, bounded), with a lock because
    gunicorn's threads share it (the function itself runs outside the lock). The cached
    function has `cache_clear()`."""
    return cached(TTLCache(maxsize=max_entries, ttl=settings.SOURCE_CACHE_SECONDS), lock=threading.Lock())


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


@ttl_cached(10_000)
def get_source(*, source_id: str) -> SourceSnapshot | None:
    return _load_source(source_id)


@ttl_cached(1000)
def any_source_allows_origin(*, origin: str) -> bool:
    """For CORS preflights, which carry no body and so no source id."""
    return any(
        "*" in parse_origins(text) or origin in parse_origins(text)
        for text in EventSource.objects.filter(enabled=True).values_list("allowed_origins", flat=True)
    )


@ttl_cached(1)
def collector_enabled() -> bool:
    row = WorkerSettings.objects.filter(worker_type=WorkerType.COLLECTOR).first()
    return bool(row and row.enabled)


@ttl_cached(1)
def get_rules() -> RuleSet:
    """The enabled pre-processing rules, compiled."""
    return RuleSet.compile(
        validators=EventValidator.objects.filter(enabled=True),
        reshapers=EventReshaper.objects.filter(enabled=True),
        mappings=EventMapping.objects.filter(enabled=True),
    )


# session id -> profile id of registered sessions. The registry never changes a session's
# profile once written, so the API reads it once per process instead of once per request
# (it was 15 % of a request). Only found sessions are kept: an unknown one must be
# registered. Bounded in size and time. A profile deleted (GDPR) leaves the registry: every
# process empties its cache when it sees a newer deletion (`latest_profile_deletion`,
# within SOURCE_CACHE_SECONDS), so a returning session of the deleted profile is not
# answered with it any longer. (`cached` has no "do not keep this result" hook, hence the
# explicit get and put.)
KNOWN_SESSION_SECONDS = 60.0
_known_sessions: TTLCache[str, str] = TTLCache(maxsize=100_000, ttl=KNOWN_SESSION_SECONDS)
_known_sessions_lock = threading.Lock()
_known_sessions_since: list[datetime | None] = [None]  # the latest deletion the cache has seen


@ttl_cached(1)
def latest_profile_deletion() -> datetime | None:
    return ProfileTombstone.objects.order_by("-deleted_at").values_list("deleted_at", flat=True).first()


def known_profile(session_id: str) -> str | None:
    latest = latest_profile_deletion()
    with _known_sessions_lock:
        if latest != _known_sessions_since[0]:
            _known_sessions.clear()
            _known_sessions_since[0] = latest
        profile_id = _known_sessions.get(session_id)
    if profile_id is not None:
        return profile_id
    profile_id = SessionIdentity.objects.filter(session_id=session_id).values_list("profile_id", flat=True).first()
    if profile_id is not None:
        with _known_sessions_lock:
            if _known_sessions_since[0] == latest:  # not read before a deletion that emptied the cache since
                _known_sessions[session_id] = profile_id
    return profile_id


def clear_caches() -> None:
    for function in (get_source, any_source_allows_origin, collector_enabled, get_rules, latest_profile_deletion):
        function.cache_clear()
    with _known_sessions_lock:
        _known_sessions.clear()
