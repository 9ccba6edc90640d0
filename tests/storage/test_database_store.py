"""What only the database store does: profile rows written before the windows were packed."""

from __future__ import annotations

import pytest
from django.db import IntegrityError
from django.utils import timezone

from storage.backends.database import DatabaseStore, insert_rows, update_rows
from storage.documents import Applied, new_profile
from storage.jobs import ProfileChange, ProfileOperation
from storage.models import EventRecord, ProfileRecord, SessionRecord
from storage.store import PROFILES_PER_WRITE

pytestmark = pytest.mark.django_db


def test_a_row_with_lists_of_ids_skips_what_it_applied_and_is_written_back_packed():
    now = timezone.now()
    document = new_profile("p1", now=now.isoformat())
    document["stats"]["x"] = 1
    ProfileRecord.objects.create(
        id="p1", document=document, applied_jobs=["j1"], applied_events=["e1"], created_at=now, updated_at=now
    )
    increment = ProfileOperation("increment", "stats.x", 1)
    redelivered = ProfileChange("p1", "j1", [increment])
    retried = ProfileChange("p1", "j2", [ProfileOperation("increment", "stats.x", 1, event="e1")])
    new = ProfileChange("p1", "j3", [ProfileOperation("increment", "stats.x", 1, event="e2")])
    DatabaseStore().apply_profile_changes([redelivered, retried, new])
    assert DatabaseStore().get("profile", "p1")["stats"]["x"] == 2  # only e2's operation applied
    record = ProfileRecord.objects.get(id="p1")
    assert Applied.of(record.applied_jobs, record.applied_events) == Applied.of(["j1", "j2", "j3"], ["e1", "e2"])
    assert record.applied_jobs == Applied.of(["j1", "j2", "j3"], []).jobs  # the packed form


def test_a_batch_of_more_profiles_than_one_write_round_is_one_transaction():
    count = PROFILES_PER_WRITE + 5
    changes = [ProfileChange(f"p{n}", f"j{n}", [ProfileOperation("increment", "stats.x", 1)]) for n in range(count)]
    store = DatabaseStore()
    assert store.apply_profile_changes(changes).saved == count
    store.apply_profile_changes(changes)  # redelivered: every round skips its jobs
    assert {p["stats"]["x"] for p in ProfileRecord.objects.values_list("document", flat=True)} == {1}
    assert ProfileRecord.objects.count() == count
    # A value that cannot be stored, in a profile of the last round: the rounds before it are
    # rolled back with it.
    unstorable = ProfileChange("q-last", "j-last", [ProfileOperation("set", "traits.x", object())])
    fresh = [ProfileChange(f"q{n}", f"k{n}", [ProfileOperation("increment", "stats.x", 1)]) for n in range(count)]
    with pytest.raises(TypeError):
        store.apply_profile_changes([*fresh, unstorable])
    assert not ProfileRecord.objects.filter(id__startswith="q").exists()


def test_prepared_writes_insert_and_update_rows_as_the_orm_reads_them():
    now = timezone.now()
    session = SessionRecord(
        id="s1", profile_id="p1", source_id="web", document={"a": [1, "ü"]}, created_at=now, updated_at=now
    )
    insert_rows(SessionRecord, [session])
    record = SessionRecord.objects.get(id="s1")
    assert (record.document, record.profile_id, record.created_at) == ({"a": [1, "ü"]}, "p1", now)
    record.document, record.profile_id, record.source_id = {"b": None}, None, "changed, not written"
    update_rows(SessionRecord, [record], ["document", "profile_id"])
    record = SessionRecord.objects.get(id="s1")
    assert (record.document, record.profile_id, record.source_id) == ({"b": None}, None, "web")  # named columns only
    # What orjson does not write (an integer beyond 64 bits, an increment may reach it) the
    # standard library does, as the ORM would.
    record.document = {"count": 2**70, "nested": {"k": [1.5, True]}}
    update_rows(SessionRecord, [record], ["document"])
    assert SessionRecord.objects.get(id="s1").document == {"count": 2**70, "nested": {"k": [1.5, True]}}


@pytest.mark.django_db(transaction=True)  # insert_rows' own transaction, not the test's
def test_prepared_inserts_ignoring_conflicts_keep_the_first_row_and_a_failure_writes_none():
    now = timezone.now()

    def event(event_id: str, kind: str) -> EventRecord:
        return EventRecord(id=event_id, type=kind, source_id="web", time=now, document={"type": kind})

    insert_rows(EventRecord, [event("e1", "first")], ignore_conflicts=True)
    insert_rows(EventRecord, [event("e1", "second"), event("e2", "new")], ignore_conflicts=True)
    assert dict(EventRecord.objects.values_list("id", "type")) == {"e1": "first", "e2": "new"}
    # Without ignore_conflicts the duplicate fails the statement run, and its rows are one
    # transaction: e3, before it, is not written either.
    with pytest.raises(IntegrityError):
        insert_rows(EventRecord, [event("e3", "new"), event("e1", "again")])
    assert not EventRecord.objects.filter(id="e3").exists()
