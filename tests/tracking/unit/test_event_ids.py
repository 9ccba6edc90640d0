"""Event ids: uuid4s read in one go, and client ids scoped to their source and session."""

from __future__ import annotations

import uuid

import pytest

from tracking.services import assign_event_ids, random_uuids

pytestmark = pytest.mark.unit


def test_random_uuids_are_uuid4s_as_uuid_writes_them_and_all_differ():
    ids = random_uuids(1000)
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == value
    assert len(set(ids)) == 1000
    assert random_uuids(0) == []


def test_events_without_an_id_get_a_fresh_one_and_given_ids_are_derived():
    events = [{"id": None}, {"id": "a"}, {"id": None}]
    first = assign_event_ids(events, source_id="s", session_id="x")
    again = assign_event_ids(events, source_id="s", session_id="x")
    assert [e["client_id"] for e in first] == [None, "a", None]
    assert first[1]["id"] == again[1]["id"]  # a retry maps to the same stored event
    assert first[0]["id"] != again[0]["id"] and first[0]["id"] != first[2]["id"]
    assert assign_event_ids(events, source_id="s", session_id="y")[1]["id"] != first[1]["id"]
