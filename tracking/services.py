"""Processing of a tracker payload: one code path for the API and the collector worker.

`register_identity` writes the identity registry (the only synchronous write, once per
session); `build_storage_jobs` writes nothing, and reads the store only when a rule refers
to `session@` or `profile@`; `track` and `enqueue` publish and return only after the
broker confirmed.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from queueing.broker import Broker, OutgoingMessage
from queueing.topics import COLLECTOR, FUNCTIONS
from storage.documents import Applied, apply_changes, new_profile
from storage.jobs import ProfileChange, ProfileOperation, SessionChange, StorageJob
from storage.store import get_store
from tracardi_site.contracts import SCHEMA_VERSION
from tracardi_site.jsonutil import deep_merge
from tracking import selectors, telemetry
from tracking.models import BotFilter, SessionIdentity
from tracking.rules.engine import LazySources, RuleSet, preprocess_event
from tracking.selectors import SourceSnapshot, get_rules
from tracking.visits import parse_user_agent, visit_context, visit_operations

JOB_NAMESPACE = uuid.UUID("6f1c8f1e-5a57-4b59-9d1f-8f0f6c1d2a10")
EVENT_NAMESPACE = uuid.UUID("0b9d3d52-8a43-4a0e-9c55-3f9f4f8e2c71")


@dataclass(frozen=True)
class RequestMeta:
    ip: str | None
    headers: dict[str, str]
    received_at: str  # ISO 8601, UTC


@dataclass(frozen=True)
class Identity:
    session_id: str
    profile_id: str | None
    new_session: bool
    new_profile: bool = False

    @property
    def key(self) -> str:
        """Messages are keyed by profile, or by session before a profile exists."""
        return self.profile_id or self.session_id


@dataclass
class TrackResult:
    identity: Identity
    events: list[dict[str, Any]]  # the payload's events, with their stored ids
    jobs: list[StorageJob] = field(default_factory=list)  # what the API published (none in queue mode)
    task_id: str | None = None

    @property
    def event_ids(self) -> list[str]:
        return [e["id"] for e in self.events]


@functools.lru_cache(maxsize=4096)
def is_secret_header(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether a header (lower-case name) matches TRACK_DROP_HEADERS; cached per name."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def request_headers(meta: dict[str, Any]) -> dict[str, str]:
    """HTTP headers from a WSGI environ, minus those that may carry credentials
    (TRACK_DROP_HEADERS): they would be stored with the event for anyone to read."""
    patterns = settings.TRACK_DROP_HEADERS
    headers = {}
    for name, value in meta.items():
        if name.startswith("HTTP_"):
            header = name[5:].replace("_", "-").lower()
        elif name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            header = name.replace("_", "-").lower()
        else:
            continue
        if not is_secret_header(header, patterns):
            headers[header] = str(value)
    return headers


def find_identity(*, source: SourceSnapshot, payload: dict[str, Any]) -> Identity | None:
    """The identity of a known session (a read), or None when the session must be registered."""
    session_id = (payload.get("session") or {}).get("id")
    if payload.get("profile_less"):
        return Identity(session_id=session_id or str(uuid.uuid4()), profile_id=None, new_session=False)
    if not session_id:
        return None
    existing = selectors.known_profile(session_id)
    if existing is None:
        return None
    return Identity(session_id=session_id, profile_id=_trusted_profile(source, payload) or existing, new_session=False)


def register_identity(*, source: SourceSnapshot, payload: dict[str, Any]) -> Identity:
    """Registers a new session (see docs: guarantees). Its profile is, in order: the client's
    id where the source trusts static ids; the client's id when this system issued it before
    (a returning visitor: ids are random uuid4s the server gave out, so a client can only
    name a profile it was given); else a new profile. The unique key makes concurrent first
    requests of one session agree on one profile."""
    session_id = (payload.get("session") or {}).get("id") or str(uuid.uuid4())
    trusted = _trusted_profile(source, payload)
    returning = None if trusted else _issued_profile(payload)
    candidate = trusted or returning or str(uuid.uuid4())
    record, created = SessionIdentity.objects.get_or_create(
        session_id=session_id, defaults={"profile_id": candidate, "source_id": source.id}
    )
    if not created:  # a concurrent first request of this session registered it first
        return Identity(session_id=session_id, profile_id=trusted or record.profile_id, new_session=False)
    if returning:
        new_profile = False
    else:  # a trusted static id may name a profile that other sessions made before
        new_profile = (
            not trusted
            or not SessionIdentity.objects.filter(profile_id=trusted).exclude(session_id=session_id).exists()
        )
    return Identity(session_id=session_id, profile_id=candidate, new_session=True, new_profile=new_profile)


def _issued_profile(payload: dict[str, Any]) -> str | None:
    """The client's profile id, if a session of this system was given it before."""
    claimed = (payload.get("profile") or {}).get("id")
    if claimed and SessionIdentity.objects.filter(profile_id=claimed).exists():
        return claimed
    return None


def _trusted_profile(source: SourceSnapshot, payload: dict[str, Any]) -> str | None:
    """The client's profile id counts only where the source trusts static ids: a client
    cannot attach itself to a profile it names."""
    return (payload.get("profile") or {}).get("id") if source.static_profile_id else None


def stored_event_id(*, source_id: str, session_id: str, client_id: str) -> str:
    """The id an event with a client's id is stored under. That id counts within its source
    and session only: a retry from the same session maps to the same stored event (and is a
    no-op), the same id from another session or source to another event, so no client can
    reach another visitor's event."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{source_id}\n{session_id}\n{client_id}"))


def random_uuids(count: int) -> list[str]:
    """`count` uuid4 strings (as `str(uuid.uuid4())` writes them) from one read of the
    kernel's random source. uuid.uuid4() reads it once per id, a system call that lets the
    GIL go to another thread each time. For the 10 ids of a 10-event request (timeit, one
    process): 35.6 us with uuid4, 11.3 us here; `str(uuid.UUID(bytes=..., version=4))` over
    one read took 32.4 us, its objects costing as much as the reads."""
    raw = bytearray(os.urandom(16 * count))
    ids = []
    for start in range(0, 16 * count, 16):
        raw[start + 6] = raw[start + 6] & 0x0F | 0x40  # version 4
        raw[start + 8] = raw[start + 8] & 0x3F | 0x80  # variant RFC 4122
        h = raw[start : start + 16].hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def assign_event_ids(events: list[dict[str, Any]], *, source_id: str, session_id: str) -> list[dict[str, Any]]:
    """The payload's events with their stored ids (`stored_event_id`, or a new uuid4 for an
    event without one); the client's id is kept as `client_id`."""
    fresh = iter(random_uuids(sum(1 for event in events if event["id"] is None)))
    return [
        {
            **event,
            "id": next(fresh)
            if event["id"] is None
            else stored_event_id(source_id=source_id, session_id=session_id, client_id=event["id"]),
            "client_id": event["id"],
        }
        for event in events
    ]


def system_event_id(event_type: str, session_id: str) -> str:
    """System events derive their ids from the session: a redelivered payload stores them once."""
    return str(uuid.uuid5(JOB_NAMESPACE, f"{event_type}:{session_id}"))


def publish_with_identity(
    *, broker: Broker, source: SourceSnapshot, payload: dict[str, Any], build: Callable[[Identity], list]
) -> Identity:
    """Publishes `build(identity)`. A new session is registered in the same transaction as
    the publish: if the publish fails, the session is not registered either (nothing was
    accepted). A known session needs no transaction around the build."""
    identity = find_identity(source=source, payload=payload)
    if identity is not None:
        messages = build(identity)
        with telemetry.timed_publish():
            broker.publish(messages)
        return identity
    with transaction.atomic():
        identity = register_identity(source=source, payload=payload)
        messages = build(identity)
        with telemetry.timed_publish():
            broker.publish(messages)
    return identity


def _event_document(
    event: dict[str, Any],
    *,
    source: SourceSnapshot,
    identity: Identity,
    meta: RequestMeta,
    errors: list[dict[str, str]] | None = None,
    notes: list[str] | None = None,
    bot: bool = False,
) -> dict[str, Any]:
    document = {
        "id": event["id"],
        "type": event["type"],
        "metadata": {
            "time": {"insert": meta.received_at, "create": event.get("time") or meta.received_at},
            "valid": not errors,
        },
        "source": {"id": source.id},
        "session": {"id": identity.session_id},
        "profile": {"id": identity.profile_id} if identity.profile_id else None,
        "properties": event["properties"],
        "context": event["context"],
        "options": event["options"],
        "tags": event["tags"],
        "request": {"ip": meta.ip, "headers": meta.headers},
    }
    if event.get("client_id") is not None:
        document["metadata"]["client_id"] = event["client_id"]
    if errors:
        document["metadata"]["validation"] = [f"{e['path']}: {e['message']}" for e in errors]
    if notes:
        document["metadata"]["mapping"] = notes
    if bot:
        document["bot"] = True
    return document


def system_events(*, identity: Identity, meta: RequestMeta, save_profile: bool) -> list[dict[str, Any]]:
    """profile-created, session-opened and visit-started, as the reference system stores them."""
    types = (["profile-created"] if identity.new_profile and identity.profile_id and save_profile else []) + (
        ["session-opened", "visit-started"] if identity.new_session else []
    )
    return [
        {
            "id": system_event_id(event_type, identity.session_id),
            "type": event_type,
            "properties": {},
            "context": {},
            "options": {},
            "tags": ["system"],
            "time": meta.received_at,
        }
        for event_type in types
    ]


def build_storage_jobs(
    *,
    source: SourceSnapshot,
    payload: dict[str, Any],
    meta: RequestMeta,
    identity: Identity,
    job_id: str,
    rules: RuleSet,
    validation: list[list[dict[str, str]]] | None = None,
) -> list[StorageJob]:
    """Pre-processes every event (validation -> reshaping -> mapping), derives the session
    and visit data and the profile operations, and returns the storage job."""
    options = payload["options"]
    user_agent = meta.headers.get("user-agent")
    bot = source.bot_filter == BotFilter.MARK and parse_user_agent(user_agent)["bot"]
    context = with_latest_page(payload)
    session_context = copy.deepcopy(context)
    operations: list[ProfileOperation] = []
    if identity.new_session:
        # What the server derives wins over what the client sent under the same keys.
        deep_merge(session_context, visit_context(payload_context=context, user_agent=user_agent))
        if identity.profile_id:
            visit = system_event_id("visit-started", identity.session_id)
            operations += visit_operations(now=meta.received_at, event_id=visit)
    sources = LazySources(
        {
            "session": lambda: _current_session(identity, session_context, payload["properties"]),
            "profile": lambda: _stored_profile(identity),
        },
        payload=payload,
    )
    # System events are pre-processed like the others: a mapping may count visits.
    events = payload["events"] + system_events(identity=identity, meta=meta, save_profile=options["saveProfile"])
    known = validation or []  # the API validated the payload's events already, with these rules
    outcomes = [
        preprocess_event(
            event, rules=rules, source_id=source.id, sources=sources, errors=known[i] if i < len(known) else None
        )
        for i, event in enumerate(events)
    ]
    # One operation per event, so a retried event is not counted again (see apply_changes).
    operations += [ProfileOperation("increment", "stats.events", 1, event=e["id"]) for e in payload["events"]]
    for outcome in outcomes:
        operations += outcome.operations
        deep_merge(session_context, outcome.session_context)

    profile = None
    if identity.profile_id and options["saveProfile"]:
        profile = ProfileChange(profile_id=identity.profile_id, job_id=job_id, operations=operations)
    session = None
    if options["saveSession"] and not source.transitional:
        session = SessionChange(
            id=identity.session_id,
            profile_id=identity.profile_id,
            source_id=source.id,
            time=meta.received_at,
            context=session_context,
            properties=payload["properties"],
        )
    documents = []
    if options["saveEvents"] and not source.transitional:
        common = {"source": source, "identity": identity, "meta": meta, "bot": bot}
        documents = [
            _event_document(o.event, errors=o.errors, notes=o.messages, **common) for o in outcomes if is_saved(o.event)
        ]
    if profile is None and session is None and not documents:
        return []
    return [StorageJob(job_id=job_id, profile=profile, session=session, events=documents)]


def is_saved(event: dict[str, Any]) -> bool:
    """An event with `options.save: false` is processed (its profile operations apply) but
    not stored, as in Tracardi."""
    return event["options"].get("save") is not False


def with_latest_page(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload's context, with the page of its last event that names one when the
    payload itself names none: a tracker puts the page in each event's context, and the
    session shows the page the visitor is on."""
    if isinstance(payload["context"].get("page"), dict):
        return payload["context"]
    pages = [e["context"]["page"] for e in payload["events"] if isinstance(e["context"].get("page"), dict)]
    return {**payload["context"], "page": pages[-1]} if pages else payload["context"]


def _current_session(identity: Identity, context: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    """The session as this request sees it: what is stored, with this request's data on top."""
    stored = None if identity.new_session else get_store().get("session", identity.session_id)
    session = stored or {"id": identity.session_id, "context": {}, "properties": {}}
    deep_merge(session.setdefault("context", {}), context)
    deep_merge(session.setdefault("properties", {}), properties)
    return session


def _stored_profile(identity: Identity) -> dict[str, Any] | None:
    if not identity.profile_id:
        return None
    return get_store().get("profile", identity.profile_id) or {"id": identity.profile_id}


def validate_events(*, source: SourceSnapshot, payload: dict[str, Any], rules: RuleSet) -> list[list[dict[str, str]]]:
    """Each event's validation failures, in payload order."""
    return [rules.validate(event, source_id=source.id) for event in payload["events"]]


def with_payload_paths(validation: list[list[dict[str, str]]]) -> list[dict[str, str]]:
    """The failures of every event, with JSON paths into the payload."""
    return [
        {"path": f"$.events[{index}]{error['path']}", "message": error["message"]}
        for index, errors in enumerate(validation)
        for error in errors
    ]


def track(
    *,
    broker: Broker,
    source: SourceSnapshot,
    payload: dict[str, Any],
    meta: RequestMeta,
    rules: RuleSet,
    validation: list[list[dict[str, str]]] | None = None,
) -> TrackResult:
    """Processes a payload in the API and publishes its storage jobs, with the rules the
    request was validated against."""
    job_id = str(uuid.uuid4())
    built: dict[str, Any] = {}

    def build(identity: Identity) -> list[OutgoingMessage]:
        built["events"] = assign_event_ids(payload["events"], source_id=source.id, session_id=identity.session_id)
        built["jobs"] = build_storage_jobs(
            source=source,
            payload={**payload, "events": built["events"]},
            meta=meta,
            identity=identity,
            job_id=job_id,
            rules=rules,
            validation=validation,
        )
        return [OutgoingMessage(topic=FUNCTIONS, key=identity.key, payload=job.to_payload()) for job in built["jobs"]]

    identity = publish_with_identity(broker=broker, source=source, payload=payload, build=build)
    return TrackResult(identity=identity, events=built["events"], jobs=built["jobs"])


def enqueue(*, broker: Broker, source: SourceSnapshot, payload: dict[str, Any], meta: RequestMeta) -> TrackResult:
    """Queue mode: registers the identity, then leaves the processing to the collector worker."""
    task_id = str(uuid.uuid4())
    built: dict[str, Any] = {}

    def build(identity: Identity) -> list[OutgoingMessage]:
        # The stored ids are given here, not by the collector: the answer names them.
        built["events"] = assign_event_ids(payload["events"], source_id=source.id, session_id=identity.session_id)
        message = {
            "v": SCHEMA_VERSION,
            "kind": "collect",
            "task_id": task_id,
            # Dataclasses as they are: the broker's orjson serializes their fields (the same
            # JSON as asdict, without its deep copy on every request).
            "source": source,
            "payload": {**payload, "events": built["events"]},
            "meta": meta,
            "identity": identity,
        }
        return [OutgoingMessage(topic=COLLECTOR, key=identity.key, payload=message)]

    identity = publish_with_identity(broker=broker, source=source, payload=payload, build=build)
    return TrackResult(identity=identity, events=built["events"], task_id=task_id)


def profile_after(
    *,
    source: SourceSnapshot,
    payload: dict[str, Any],
    meta: RequestMeta,
    result: TrackResult,
    rules: RuleSet,
) -> dict[str, Any] | None:
    """The profile as it will be once this payload is stored (`options.profile`): the stored
    profile with this payload's operations applied in memory, in order. In queue mode the
    operations are worked out here too, without publishing them."""
    identity = result.identity
    if not identity.profile_id:
        return None
    jobs = result.jobs
    if result.task_id is not None:  # queued: the collector builds the jobs later
        jobs = build_storage_jobs(
            source=source,
            payload={**payload, "events": result.events},
            meta=meta,
            identity=identity,
            job_id=result.task_id,
            rules=rules,
        )
    stored = get_store().get("profile", identity.profile_id)
    document = stored or new_profile(identity.profile_id, now=meta.received_at)
    changes = [job.profile for job in jobs if job.profile is not None]
    profile = apply_changes(document, Applied(), changes, now=meta.received_at).document if changes else document
    profile["metadata"]["time"].setdefault("insert", profile["metadata"]["time"].get("create"))
    return profile


def debugging_summary(*, source: SourceSnapshot, payload: dict[str, Any], result: TrackResult) -> dict[str, Any]:
    """Tracardi's `debugging` block; "saved" means accepted for storage."""
    options = payload["options"]
    stores = not source.transitional
    events = [e["id"] for e in result.events if is_saved(e)] if options["saveEvents"] and stores else []
    session = [result.identity.session_id] if options["saveSession"] and stores else []
    profile = [result.identity.profile_id] if result.identity.profile_id and options["saveProfile"] else []
    return {
        "events": {"saved": len(events), "errors": [], "ids": events},
        "session": {"saved": len(session), "ids": session},
        "profile": {"saved": len(profile), "ids": profile},
    }


def collect_queued(message: dict[str, Any]) -> list[OutgoingMessage]:
    """The collector worker's processing of one queued payload: exactly the API's."""
    if message.get("v") != SCHEMA_VERSION or message.get("kind") != "collect":
        raise ValueError(f"unsupported collector message (v={message.get('v')!r}, kind={message.get('kind')!r})")
    identity = Identity(**message["identity"])
    jobs = build_storage_jobs(
        source=SourceSnapshot.from_dict(message["source"]),
        payload=message["payload"],
        meta=RequestMeta(**message["meta"]),
        identity=identity,
        # Deterministic: a redelivered task yields the same job, which the store applies once.
        job_id=str(uuid.uuid5(JOB_NAMESPACE, message["task_id"])),
        rules=get_rules(),
    )
    return [OutgoingMessage(topic=FUNCTIONS, key=identity.key, payload=job.to_payload()) for job in jobs]
