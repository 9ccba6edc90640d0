"""What only the database store does: profile rows written before the windows were packed."""

from __future__ import annotations

import pytest
from django.utils import timezone

from storage.backends.database import PROFILES_PER_WRITE, DatabaseStore
from storage.documents import Applied, new_profile
from storage.jobs import ProfileChange, ProfileOperation
from storage.models import ProfileRecord

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
