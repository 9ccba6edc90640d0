"""The `database` store: Django ORM tables holding JSON documents."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q
from django.db.models.constants import OnConflict
from django.utils import timezone

from storage.documents import Applied, apply_changes, group_by_profile, merge_session, new_profile
from storage.jobs import ProfileChange, SessionChange
from storage.models import EventRecord, ProfileRecord, SessionRecord
from storage.store import (
    BrowseFilters,
    DeletedProfile,
    Entity,
    Page,
    SaveResult,
    Store,
    check_browse_filters,
    decode_cursor,
    encode_cursor,
    write_rounds,
)

MODELS = {"profile": ProfileRecord, "session": SessionRecord, "event": EventRecord}
FILTERS = {
    "profile": set(),
    "session": {"profile_id", "source_id"},
    "event": {"profile_id", "session_id", "source_id", "type"},
}
ORDERING = {"profile": "-updated_at", "session": "-updated_at", "event": "-time"}
# The time the console lists by (indexed with the id: migration 0004), and its filter columns.
TIME_COLUMN = {"profile": "created_at", "session": "created_at", "event": "time"}
BROWSE_COLUMNS = {name: name for name in ("id", "type", "source_id", "profile_id", "session_id")}


def insert_rows(model: type[models.Model], rows: Sequence[models.Model], *, ignore_conflicts: bool = False) -> None:
    """INSERT of `rows`, all of the model's columns, as one prepared statement run per row
    (on MySQL the driver sends them as one multi-row INSERT).

    Not bulk_create, nor bulk_update below: these run inside the write transactions of the
    background worker, which on SQLite hold the one write lock that every /track publish
    waits for, and the ORM's building of each row's SQL (bulk_update's CASE WHEN per row
    and column) cost more there than the statements (bench/store_write_cost.py compares
    them). The values are what the ORM sends (_params)."""
    if not rows:
        return
    db = connections[DEFAULT_DB_ALIAS]
    fields = model._meta.concrete_fields
    quote = db.ops.quote_name
    sql = (
        f"{db.ops.insert_statement(on_conflict=OnConflict.IGNORE if ignore_conflicts else None)} "
        f"{quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    _run(db, sql, _params(db, rows, fields))


def update_rows(model: type[models.Model], rows: Sequence[models.Model], names: Sequence[str]) -> None:
    """UPDATE of the columns `names` of `rows`, by primary key: one prepared statement run
    per row (see insert_rows for why not bulk_update)."""
    if not rows:
        return
    db = connections[DEFAULT_DB_ALIAS]
    pk = model._meta.pk
    fields = [*(model._meta.get_field(name) for name in names), pk]
    quote = db.ops.quote_name
    sql = (
        f"UPDATE {quote(model._meta.db_table)} SET {', '.join(f'{quote(f.column)} = %s' for f in fields[:-1])} "
        f"WHERE {quote(pk.column)} = %s"
    )
    _run(db, sql, _params(db, rows, fields))


def _params(db: BaseDatabaseWrapper, rows: Sequence[models.Model], fields: Sequence[models.Field]) -> list[list[Any]]:
    """Each row's values of `fields`, as the ORM would send them: the field's get_db_prep_save,
    except a JSONField's, which is orjson here. The JSON is the same data (compact, UTF-8
    rather than \\u escapes) and reads back through the field the same; the documents were
    serialized by orjson already, as the messages that carried them."""
    preps = [_json if isinstance(f, models.JSONField) else partial(f.get_db_prep_save, connection=db) for f in fields]
    names = [f.attname for f in fields]
    return [[prep(getattr(row, name)) for prep, name in zip(preps, names, strict=True)] for row in rows]


def _json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # what only the standard library writes, an integer beyond 64 bits
        return json.dumps(value)


def _run(db: BaseDatabaseWrapper, sql: str, params: list[list[Any]]) -> None:
    # A transaction, as bulk_create's: outside one each row would commit (and sync) alone.
    with transaction.atomic(using=db.alias, savepoint=False), db.cursor() as cursor:
        cursor.executemany(sql, params)


def _parse_time(value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.UTC)


class DatabaseStore(Store):
    def setup(self) -> None:
        """Nothing to create: the tables come with the migrations."""

    def refresh(self) -> None:
        """Nothing to do: a committed write is visible at once."""

    def apply_profile_changes(self, changes: Sequence[ProfileChange]) -> SaveResult:
        result = SaveResult()
        if not changes:
            return result
        now = timezone.now()
        by_profile = group_by_profile(changes)
        with transaction.atomic():  # still one transaction: the batch's profiles are written all or none
            for ids in write_rounds(list(by_profile)):
                self._write_profiles({i: by_profile[i] for i in ids}, now, result)
        result.saved = len(by_profile)
        return result

    def _write_profiles(self, by_profile: dict[str, list[ProfileChange]], now: datetime, result: SaveResult) -> None:
        """Reads, changes and writes these profiles (within the caller's transaction); what
        they held is released on return."""
        stamp = now.isoformat()
        existing = {p.id: p for p in ProfileRecord.objects.select_for_update().filter(id__in=list(by_profile))}
        to_create, to_update = [], []
        for profile_id, profile_changes in by_profile.items():
            record = existing.get(profile_id)
            outcome = apply_changes(
                record.document if record else new_profile(profile_id, now=stamp),
                Applied.of(record.applied_jobs, record.applied_events) if record else Applied(),
                profile_changes,
                now=stamp,
            )
            result.failed_operations += outcome.failed
            if outcome.changed:
                result.changed[profile_id] = (record.document if record else None, outcome.document)
            fields = {
                "document": outcome.document,
                "applied_jobs": outcome.applied.jobs,
                "applied_events": outcome.applied.events,
                "updated_at": now,
            }
            if record:
                if outcome.changed:
                    for name, value in fields.items():
                        setattr(record, name, value)
                    to_update.append(record)
            else:
                to_create.append(ProfileRecord(id=profile_id, created_at=now, **fields))
        insert_rows(ProfileRecord, to_create)
        update_rows(ProfileRecord, to_update, ["document", "applied_jobs", "applied_events", "updated_at"])

    def save_sessions(self, changes: Sequence[SessionChange]) -> SaveResult:
        result = SaveResult()
        if not changes:
            return result
        now = timezone.now()
        ids = list(dict.fromkeys(c.id for c in changes))
        with transaction.atomic():
            existing = {s.id: s for s in SessionRecord.objects.select_for_update().filter(id__in=ids)}
            docs: dict[str, dict[str, Any]] = {sid: rec.document for sid, rec in existing.items()}
            for change in changes:
                docs[change.id] = merge_session(docs.get(change.id), change)
            to_create, to_update = [], []
            for session_id in ids:
                doc = docs[session_id]
                profile_id = (doc.get("profile") or {}).get("id")
                record = existing.get(session_id)
                if record:
                    record.document, record.profile_id, record.updated_at = doc, profile_id, now
                    to_update.append(record)
                else:
                    created = _parse_time(doc["metadata"]["time"].get("insert"), now)
                    to_create.append(
                        SessionRecord(
                            id=session_id,
                            profile_id=profile_id,
                            source_id=doc["source"]["id"],
                            document=doc,
                            created_at=created,
                            updated_at=now,
                        )
                    )
            insert_rows(SessionRecord, to_create)
            update_rows(SessionRecord, to_update, ["document", "profile_id", "updated_at"])
        result.saved = len(ids)
        return result

    def save_events(self, events: Sequence[dict[str, Any]]) -> SaveResult:
        result = SaveResult()
        now = timezone.now()
        records = {}
        for event in events:
            if event["id"] in records:  # the first write wins, in a batch as across batches
                continue
            records[event["id"]] = EventRecord(
                id=event["id"],
                type=event["type"],
                profile_id=(event.get("profile") or {}).get("id"),
                session_id=(event.get("session") or {}).get("id"),
                source_id=event["source"]["id"],
                time=_parse_time(event.get("metadata", {}).get("time", {}).get("insert"), now),
                document=event,
            )
        if records:
            # Events are immutable: an id stored before (a redelivery, or a retry of the same
            # request) keeps its first document.
            insert_rows(EventRecord, list(records.values()), ignore_conflicts=True)
        result.saved = len(records)
        return result

    def get(self, entity: Entity, id: str) -> dict[str, Any] | None:
        record = MODELS[entity].objects.filter(id=id).only("document").first()
        return record.document if record else None

    def get_event(self, event_id: str, *, received_before: datetime | None = None) -> dict[str, Any] | None:
        # A committed row is what `get` reads: durable and readable are the same moment here.
        return self.get("event", event_id)

    def _queryset(self, entity: Entity, filters: dict[str, str]):
        unknown = set(filters) - FILTERS[entity]
        if unknown:
            raise ValueError(f"cannot filter {entity}s by {', '.join(sorted(unknown))}")
        return MODELS[entity].objects.filter(**filters)

    def search(self, entity: Entity, *, limit: int = 100, **filters: str) -> list[dict[str, Any]]:
        rows = self._queryset(entity, filters).order_by(ORDERING[entity]).values_list("document", flat=True)
        return list(rows[:limit])

    def count(self, entity: Entity, **filters: str) -> int:
        return self._queryset(entity, filters).count()

    def browse(
        self, entity: Entity, *, filters: BrowseFilters | None = None, page_size: int = 50, after: str | None = None
    ) -> Page:
        filters = filters or BrowseFilters()
        check_browse_filters(entity, filters)
        column = TIME_COLUMN[entity]
        rows = MODELS[entity].objects.filter(
            **{BROWSE_COLUMNS[name]: getattr(filters, name) for name in filters.used() - {"since", "until"}}
        )
        if filters.since:
            rows = rows.filter(**{f"{column}__gte": filters.since})
        if filters.until:
            rows = rows.filter(**{f"{column}__lt": filters.until})
        if after:
            moment, last_id = decode_cursor(after)
            try:
                moment = datetime.fromisoformat(moment)
            except (TypeError, ValueError) as exc:
                raise ValueError("invalid page cursor") from exc
            # Keyset: rows after the last one shown, in (time, id) descending order.
            rows = rows.filter(Q(**{f"{column}__lt": moment}) | Q(**{column: moment, "id__lt": last_id}))
        found = list(rows.order_by(f"-{column}", "-id").values_list(column, "id", "document")[: page_size + 1])
        cursor = None
        if len(found) > page_size:
            found = found[:page_size]
            cursor = encode_cursor([found[-1][0].isoformat(), found[-1][1]])
        return Page(items=[document for _, _, document in found], next=cursor)

    def delete_profile(self, profile_id: str) -> DeletedProfile:
        with transaction.atomic():
            events, _ = EventRecord.objects.filter(profile_id=profile_id).delete()
            sessions, _ = SessionRecord.objects.filter(profile_id=profile_id).delete()
            profiles, _ = ProfileRecord.objects.filter(id=profile_id).delete()
        return DeletedProfile(profiles=profiles, sessions=sessions, events=events)
