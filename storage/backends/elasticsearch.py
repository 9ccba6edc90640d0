"""The `elasticsearch` store: profile, session and event documents in Elasticsearch.

- Index templates (created by `setup_storage`, or on first use) map only the fields the
  pipeline queries; arbitrary objects (properties, context, traits, ...) are `flattened`
  fields, one mapping entry each however many keys clients send, so a flood of new
  property names cannot explode the mapping. Roots outside the mapping stay in _source.
- Events go to monthly indices `<tenant>.event-YYYY-MM` behind the read alias
  `<tenant>.event`; profiles and sessions have an index each.
- Profiles and sessions are read-modify-written with optimistic concurrency
  (if_seq_no / if_primary_term): on a conflict the document is read again and the
  changes applied again, so an update is never lost, whoever else wrote in between.
  The profile keeps digests of the last jobs and events it applied (storage/documents.py,
  `Window`), so a redelivered job or a client's retry is skipped.
- Bulk writes report per document.
- Requests and answers are (de)serialized with orjson (`SERIALIZERS`): the client's default,
  the standard library's json, took about 40 % of the background worker's CPU at half load.
  A document orjson refuses goes the standard library's way.
- One retry policy, the client's: its transport retries connection errors, timeouts and
  502/503/504 answers (`max_retries`), its bulk helper retries the documents refused with
  429 with a growing delay (`streaming_bulk`'s `max_retries`, `initial_backoff`). What
  still fails is StoreUnavailable, and the worker retries the whole batch later without
  spending a redelivery (`Worker.transient_errors`, tests/storage/test_elasticsearch_store.py).
Nothing here needs scripts, update/delete-by-query or extra analyzers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.utils import timezone
from elasticsearch import ApiError, Elasticsearch, NotFoundError, SerializationError, TransportError
from elasticsearch.dsl import (
    Boolean,
    Date,
    Document,
    Flattened,
    InnerDoc,
    Integer,
    Keyword,
    MetaField,
    Object,
)
from elasticsearch.helpers import streaming_bulk
from elasticsearch.serializer import JsonSerializer, OrjsonSerializer

from storage.documents import Applied, FailedOperation, apply_changes, group_by_profile, merge_session, new_profile
from storage.jobs import ProfileChange, SessionChange
from storage.store import (
    BrowseFilters,
    DeletedProfile,
    Entity,
    Page,
    SaveResult,
    Store,
    StoreUnavailable,
    check_browse_filters,
    decode_cursor,
    encode_cursor,
    write_rounds,
)

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
RETRY_BASE_SECONDS = 0.2
# Retried at once by the transport; 429 asks to slow down, so only the bulk helper retries
# it, after a delay, and elsewhere it is StoreUnavailable and the worker's later retry.
TRANSPORT_RETRY_STATUS = (502, 503, 504)
UNAVAILABLE_STATUS = {429, *TRANSPORT_RETRY_STATUS}
# A worker's batch goes in bulk requests of at most this many documents and bytes: the
# helper holds a request's serialized lines until it is answered, so one request for a
# whole batch of 10,000 events peaked 36 MiB higher than requests of 1,000, for the same
# speed (bench/half_load.py --stack real reports the worker's peak RSS).
BULK_CHUNK_DOCUMENTS = 1000
BULK_CHUNK_BYTES = 10 * 1024 * 1024


def orjson_line(data: Any, default: Callable[[Any], Any]) -> bytes:
    """orjson's output, copied to its own size: orjson's bytes keep a buffer of at least
    4 KiB however short the JSON, and the bulk helper holds every line of a batch until it
    is sent (10,000 events took about 75 MiB more). The copy costs 0.4 us a line, orjson
    itself 0.45 us, the standard library's json 6.4 us."""
    return memoryview(orjson.dumps(data, default=default)).tobytes()


class StoreJsonSerializer(OrjsonSerializer):
    """Request bodies and each line the bulk helper serializes, and every answer, through
    orjson. The bulk body's NDJSON serializer only joins those lines."""

    def json_dumps(self, data: Any) -> bytes:
        try:
            return orjson_line(data, self.default)
        except orjson.JSONEncodeError:
            # What JSON carries and orjson refuses: an integer beyond 64 bits (a profile's
            # increments can make one), a lone surrogate. The client's standard-library way.
            return JsonSerializer.json_dumps(self, data)


SERIALIZERS = {"application/json": StoreJsonSerializer()}
# Read-modify-write rounds when another writer changed the document in between (409).
CONFLICT_ROUNDS = 6
FILTER_FIELDS = {"profile_id": "profile.id", "session_id": "session.id", "source_id": "source.id", "type": "type"}
ALLOWED_FILTERS = {
    "profile": set(),
    "session": {"profile_id", "source_id"},
    "event": {"profile_id", "session_id", "source_id", "type"},
}
# A longer string in a free-form object is kept in _source but not indexed: Lucene refuses
# terms over 32 KiB, and would refuse the whole document.
IGNORE_ABOVE = 8191
SORT = {"profile": "metadata.time.update", "session": "metadata.time.update", "event": "metadata.time.insert"}
# The time the console lists by, then the id: search_after on both pages without a deep `from`.
BROWSE_TIME = {"profile": "metadata.time.create", "session": "metadata.time.insert", "event": "metadata.time.insert"}
BROWSE_FIELDS = FILTER_FIELDS | {"id": "id"}
DELETE_CHUNK = 1000


# --- mappings ---------------------------------------------------------------------------


class Ref(InnerDoc):
    id = Keyword()


class EntityTime(InnerDoc):
    insert = Date()
    update = Date()
    create = Date()


class Visit(InnerDoc):
    last = Date()
    current = Date()
    count = Integer()


class ProfileTime(InnerDoc):
    create = Date()
    update = Date()
    visit = Object(Visit)


class ProfileDocument(Document):
    id = Keyword()
    metadata = Object(properties={"time": Object(ProfileTime)})
    ids = Keyword()
    stats = Flattened(ignore_above=IGNORE_ABOVE)
    traits = Flattened(ignore_above=IGNORE_ABOVE)
    data = Flattened(ignore_above=IGNORE_ABOVE)
    segments = Keyword()
    interests = Flattened(ignore_above=IGNORE_ABOVE)
    consents = Flattened(ignore_above=IGNORE_ABOVE)
    aux = Flattened(ignore_above=IGNORE_ABOVE)
    misc = Flattened(ignore_above=IGNORE_ABOVE)
    tags = Keyword()
    applied_jobs = Keyword(index=False, doc_values=False)
    applied_events = Keyword(index=False, doc_values=False)

    class Meta:
        dynamic = MetaField(False)


class SessionDocument(Document):
    id = Keyword()
    profile = Object(Ref)
    source = Object(Ref)
    metadata = Object(properties={"time": Object(EntityTime)})
    context = Flattened(ignore_above=IGNORE_ABOVE)
    properties = Flattened(ignore_above=IGNORE_ABOVE)

    class Meta:
        dynamic = MetaField(False)


class EventDocument(Document):
    id = Keyword()
    type = Keyword()
    profile = Object(Ref)
    session = Object(Ref)
    source = Object(Ref)
    # `create` is the client's time, not trusted to be a date: kept in _source only.
    metadata = Object(properties={"time": Object(properties={"insert": Date()}), "valid": Boolean()})
    properties = Flattened(ignore_above=IGNORE_ABOVE)
    context = Flattened(ignore_above=IGNORE_ABOVE)
    tags = Keyword()
    request = Object(properties={"ip": Keyword(), "headers": Flattened(ignore_above=IGNORE_ABOVE)})

    class Meta:
        dynamic = MetaField(False)


def _index_settings() -> dict[str, Any]:
    return {"number_of_shards": settings.ELASTICSEARCH_SHARDS, "number_of_replicas": settings.ELASTICSEARCH_REPLICAS}


def index_name(entity: Entity, *, month: str | None = None) -> str:
    if entity == "event":
        return f"{settings.TENANT}.event-{month}" if month else f"{settings.TENANT}.event"
    return f"{settings.TENANT}.{entity}"


def event_month(event: dict[str, Any]) -> str:
    inserted = ((event.get("metadata") or {}).get("time") or {}).get("insert")
    try:
        moment = datetime.fromisoformat(inserted) if inserted else timezone.now()
    except ValueError:
        moment = timezone.now()
    return moment.strftime("%Y-%m")


class ElasticsearchStore(Store):
    def __init__(
        self,
        *,
        hosts: list[str] | None = None,
        timeout: float | None = None,
        attempts: int = MAX_ATTEMPTS,
        backoff: float = RETRY_BASE_SECONDS,
    ) -> None:
        self.es = Elasticsearch(
            hosts or settings.ELASTICSEARCH_URL,
            request_timeout=timeout or settings.ELASTICSEARCH_TIMEOUT_SECONDS,
            retry_on_timeout=True,
            retry_on_status=TRANSPORT_RETRY_STATUS,
            max_retries=attempts - 1,
            serializers=SERIALIZERS,
        )
        self.attempts = attempts
        self.backoff = backoff
        self._ready = False
        self._lock = threading.Lock()

    # --- setup ------------------------------------------------------------------------

    def setup(self) -> None:
        """Index templates and the profile and session indices; idempotent."""
        with self._answering():
            self._setup()
        self._ready = True

    def _setup(self) -> None:
        for entity, document, pattern, aliases in (
            ("profile", ProfileDocument, index_name("profile"), {}),
            ("session", SessionDocument, index_name("session"), {}),
            ("event", EventDocument, f"{index_name('event')}-*", {index_name("event"): {}}),
        ):
            self.es.indices.put_index_template(
                name=f"{settings.TENANT}.{entity}",
                index_patterns=[pattern],
                template={
                    "settings": _index_settings(),
                    "mappings": document._doc_type.mapping.to_dict(),
                    "aliases": aliases,
                },
                priority=100,
            )
        for entity in ("profile", "session"):
            if not self.es.indices.exists(index=index_name(entity)):
                try:
                    self.es.indices.create(index=index_name(entity))
                except ApiError as exc:
                    if "resource_already_exists_exception" not in str(exc):
                        raise
        # Indices made by an earlier version get the mapping's additions (new fields,
        # ignore_above); the rest of a mapping cannot change in place, and does not here.
        for document, pattern in (
            (ProfileDocument, index_name("profile")),
            (SessionDocument, index_name("session")),
            (EventDocument, f"{index_name('event')}-*"),
        ):
            self.es.indices.put_mapping(index=pattern, allow_no_indices=True, **document._doc_type.mapping.to_dict())

    def ping(self) -> None:
        # Not get(): that would first create the indices, retrying for a long time.
        self.es.options(max_retries=0, request_timeout=settings.READYZ_TIMEOUT_SECONDS).info()

    def _ensure_ready(self) -> None:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self.setup()

    # --- failures the client's retries did not overcome ----------------------------------

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """Turns what the client retried in vain (see the module docstring) into StoreUnavailable;
        other errors (a refused request, a bad mapping) surface as they are."""
        try:
            yield
        except SerializationError:
            raise  # a document JSON cannot carry is no outage: the worker isolates its message
        except (TransportError, ApiError) as exc:  # TransportError: connection refused, reset, timed out
            if isinstance(exc, ApiError) and exc.meta.status not in UNAVAILABLE_STATUS:
                raise
            raise StoreUnavailable(f"Elasticsearch did not answer after {self.attempts} attempts: {exc}") from exc

    def _bulk(self, actions: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> dict[str, dict[str, Any]]:
        """Runs bulk actions (action line, document or None) in requests of at most
        BULK_CHUNK_DOCUMENTS; returns the failed items by id. The helper retries the items
        refused with 429."""
        failures: dict[str, dict[str, Any]] = {}
        with self._answering():
            for ok, item in streaming_bulk(
                self.es,
                actions,
                expand_action_callback=lambda action: action,  # already (action line, document)
                chunk_size=BULK_CHUNK_DOCUMENTS,
                max_chunk_bytes=BULK_CHUNK_BYTES,
                raise_on_error=False,
                max_retries=self.attempts - 1,
                initial_backoff=self.backoff,
            ):
                if not ok:
                    result = next(iter(item.values()))
                    failures[result["_id"]] = result
        return failures

    # --- read-modify-write with optimistic concurrency ------------------------------------

    def _read_modify_write(
        self,
        entity: Entity,
        ids: list[str],
        update: Callable[[str, dict[str, Any] | None], dict[str, Any] | None],
    ) -> SaveResult:
        """For each id: read, `update(id, current) -> new document or None (no change)`, write
        guarded by the sequence number read; on a conflict, read again and update again.
        PROFILES_PER_WRITE documents at a time: one mget and one bulk request each, so a
        batch holds that many profiles at once, not every profile it touches."""
        result = SaveResult()
        for some in write_rounds(list(dict.fromkeys(ids))):
            self._read_modify_write_some(entity, some, update, result)
        return result

    def _read_modify_write_some(
        self,
        entity: Entity,
        pending: Sequence[str],
        update: Callable[[str, dict[str, Any] | None], dict[str, Any] | None],
        result: SaveResult,
    ) -> None:
        index = index_name(entity)
        for _round in range(CONFLICT_ROUNDS):
            if not pending:
                break
            with self._answering():
                found = self.es.mget(index=index, ids=pending)["docs"]
            actions = []
            for doc in found:
                current = doc["_source"] if doc.get("found") else None
                try:
                    updated = update(doc["_id"], current)
                except ValueError as exc:
                    result.errors[doc["_id"]] = str(exc)
                    continue
                if updated is None:
                    continue
                if current is None:
                    meta = {"create": {"_index": index, "_id": doc["_id"]}}
                else:
                    meta = {
                        "index": {
                            "_index": index,
                            "_id": doc["_id"],
                            "if_seq_no": doc["_seq_no"],
                            "if_primary_term": doc["_primary_term"],
                        }
                    }
                actions.append((meta, updated))
            failures = self._bulk(actions) if actions else {}
            pending = [doc_id for doc_id, failure in failures.items() if failure["status"] == 409]
            for doc_id, failure in failures.items():
                if failure["status"] != 409:
                    result.errors[doc_id] = _reason(failure)
            result.saved += len(actions) - len(failures)
        for doc_id in pending:
            result.errors[doc_id] = f"still conflicting after {CONFLICT_ROUNDS} attempts"

    # --- Store ------------------------------------------------------------------------------

    def apply_profile_changes(self, changes: Sequence[ProfileChange]) -> SaveResult:
        if not changes:
            return SaveResult()
        self._ensure_ready()
        by_profile = group_by_profile(changes)
        stamp = timezone.now().isoformat()
        failed: dict[str, list[FailedOperation]] = {}  # the last attempt's, per profile
        changed: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = {}

        def update(profile_id: str, current: dict[str, Any] | None) -> dict[str, Any] | None:
            doc = dict(current or new_profile(profile_id, now=stamp))
            before = Applied.of(doc.pop("applied_jobs", None), doc.pop("applied_events", None))
            outcome = apply_changes(doc, before, by_profile[profile_id], now=stamp)
            failed[profile_id] = outcome.failed
            if current is not None and not outcome.changed:
                return None  # nothing new: every job was applied before
            changed[profile_id] = (doc if current is not None else None, outcome.document)
            return {
                **outcome.document,
                "applied_jobs": outcome.applied.jobs,
                "applied_events": outcome.applied.events,
            }

        result = self._read_modify_write("profile", list(by_profile), update)
        result.failed_operations = [
            f for profile_id, ops in failed.items() for f in ops if profile_id not in result.errors
        ]
        result.changed = {k: v for k, v in changed.items() if k not in result.errors}
        return result

    def save_sessions(self, changes: Sequence[SessionChange]) -> SaveResult:
        if not changes:
            return SaveResult()
        self._ensure_ready()
        by_session: dict[str, list[SessionChange]] = {}
        for change in changes:
            by_session.setdefault(change.id, []).append(change)

        def update(session_id: str, current: dict[str, Any] | None) -> dict[str, Any]:
            doc = current
            for change in by_session[session_id]:
                doc = merge_session(doc, change)
            return doc

        return self._read_modify_write("session", list(by_session), update)

    def save_events(self, events: Sequence[dict[str, Any]]) -> SaveResult:
        if not events:
            return SaveResult()
        self._ensure_ready()
        unique: dict[str, dict[str, Any]] = {}
        for event in events:
            unique.setdefault(event["id"], event)  # the first write wins, in a batch as across batches
        # `create`: an event stored before (a redelivery, a retry) answers 409 and keeps its
        # first document. (Its month index comes from the request's time: a retry in another
        # month than the original would be stored twice.)
        actions = [
            ({"create": {"_index": index_name("event", month=event_month(e)), "_id": e["id"]}}, e)
            for e in unique.values()
        ]
        failures = {k: v for k, v in self._bulk(actions).items() if v.get("status") != 409}
        return SaveResult(saved=len(actions) - len(failures), errors={k: _reason(v) for k, v in failures.items()})

    def get(self, entity: Entity, id: str) -> dict[str, Any] | None:
        self._ensure_ready()
        if entity == "event":
            hits = self._search("event", {"ids": {"values": [id]}}, size=1)
            return hits[0] if hits else None
        try:
            source = self.es.get(index=index_name(entity), id=id)["_source"]
        except NotFoundError:
            return None
        source.pop("applied_jobs", None)
        source.pop("applied_events", None)
        return source

    def get_event(self, event_id: str, *, received_before: datetime | None = None) -> dict[str, Any] | None:
        # A realtime multi-get on the monthly indices the event can be in (save_events names
        # its index by the month of metadata.time.insert, the API's time of receipt): a get
        # by id reads what the bulk acknowledged, before a refresh makes it searchable. Not
        # through the alias: a get on an alias of several indices is refused.
        self._ensure_ready()
        moment = (received_before or timezone.now()).astimezone(UTC)
        months = dict.fromkeys(m.strftime("%Y-%m") for m in (moment, moment.replace(day=1) - timedelta(days=1)))
        docs = [{"_index": index_name("event", month=month), "_id": event_id} for month in months]
        with self._answering():
            found = self.es.mget(docs=docs, realtime=True)["docs"]
        for doc in found:
            if doc.get("found"):
                return doc["_source"]
        return None

    def _query(self, entity: Entity, filters: dict[str, str]) -> dict[str, Any]:
        unknown = set(filters) - ALLOWED_FILTERS[entity]
        if unknown:
            raise ValueError(f"cannot filter {entity}s by {', '.join(sorted(unknown))}")
        return {"bool": {"filter": [{"term": {FILTER_FIELDS[k]: v}} for k, v in filters.items()]}}

    def _search(self, entity: Entity, query: dict[str, Any], *, size: int) -> list[dict[str, Any]]:
        response = self.es.search(
            index=index_name(entity),
            query=query,
            size=size,
            sort=[{SORT[entity]: {"order": "desc", "unmapped_type": "date"}}],
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        sources = [hit["_source"] for hit in response["hits"]["hits"]]
        for source in sources:
            source.pop("applied_jobs", None)
            source.pop("applied_events", None)
        return sources

    def search(self, entity: Entity, *, limit: int = 100, **filters: str) -> list[dict[str, Any]]:
        self._ensure_ready()
        return self._search(entity, self._query(entity, filters), size=limit)

    def count(self, entity: Entity, **filters: str) -> int:
        self._ensure_ready()
        query = self._query(entity, filters)
        return self.es.count(index=index_name(entity), query=query, ignore_unavailable=True, allow_no_indices=True)[
            "count"
        ]

    def browse(
        self, entity: Entity, *, filters: BrowseFilters | None = None, page_size: int = 50, after: str | None = None
    ) -> Page:
        filters = filters or BrowseFilters()
        check_browse_filters(entity, filters)
        self._ensure_ready()
        time_field = BROWSE_TIME[entity]
        clauses: list[dict[str, Any]] = [
            {"term": {BROWSE_FIELDS[name]: getattr(filters, name)}} for name in filters.used() - {"since", "until"}
        ]
        bounds = {}
        if filters.since:
            bounds["gte"] = filters.since.isoformat()
        if filters.until:
            bounds["lt"] = filters.until.isoformat()
        if bounds:
            clauses.append({"range": {time_field: bounds}})
        response = self.es.search(
            index=index_name(entity),
            query={"bool": {"filter": clauses}},
            size=page_size + 1,
            sort=[{time_field: {"order": "desc", "unmapped_type": "date"}}, {"id": {"order": "desc"}}],
            search_after=decode_cursor(after) if after else None,
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        hits = response["hits"]["hits"]
        cursor = None
        if len(hits) > page_size:
            hits = hits[:page_size]
            cursor = encode_cursor(hits[-1]["sort"])
        items = [hit["_source"] for hit in hits]
        for source in items:
            source.pop("applied_jobs", None)
            source.pop("applied_events", None)
        return Page(items=items, next=cursor)

    def _delete_matching(self, entity: Entity, query: dict[str, Any]) -> int:
        """Searches and bulk-deletes until nothing matches: no delete-by-query (see above).
        Each round refreshes first, so what was written a moment ago is found too."""
        deleted = 0
        while True:
            with self._answering():
                self.es.indices.refresh(index=index_name(entity), ignore_unavailable=True, allow_no_indices=True)
                hits = self.es.search(
                    index=index_name(entity),
                    query=query,
                    size=DELETE_CHUNK,
                    source=False,
                    ignore_unavailable=True,
                    allow_no_indices=True,
                )["hits"]["hits"]
            if not hits:
                return deleted
            failures = self._bulk([({"delete": {"_index": h["_index"], "_id": h["_id"]}}, None) for h in hits])
            failures = {k: v for k, v in failures.items() if v.get("status") != 404}
            if failures:
                raise StoreUnavailable(f"Elasticsearch did not delete {len(failures)} {entity}(s): {failures}")
            deleted += len(hits)

    def delete_profile(self, profile_id: str) -> DeletedProfile:
        self._ensure_ready()
        events = self._delete_matching("event", {"term": {"profile.id": profile_id}})
        sessions = self._delete_matching("session", {"term": {"profile.id": profile_id}})
        profiles = self._delete_matching("profile", {"ids": {"values": [profile_id]}})
        return DeletedProfile(profiles=profiles, sessions=sessions, events=events)

    def refresh(self) -> None:
        self.es.indices.refresh(index=f"{settings.TENANT}.*", ignore_unavailable=True, allow_no_indices=True)


def _reason(failure: dict[str, Any]) -> str:
    error = failure.get("error") or {}
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
    return str(error)
