"""The database store: ordered profile operations applied once, idempotent events, merged sessions."""

from __future__ import annotations

import pytest

from storage.jobs import ProfileChange, ProfileOperation, SessionChange
from storage.store import get_store

pytestmark = pytest.mark.django_db(transaction=True)


def change(job: str, *ops: tuple, profile: str = "p1") -> ProfileChange:
    return ProfileChange(profile_id=profile, job_id=job, operations=[ProfileOperation(*op) for op in ops])


def event(event_id: str, **fields) -> dict:
    return {
        "id": event_id,
        "type": fields.pop("type", "page-view"),
        "source": {"id": "s1"},
        "session": {"id": fields.pop("session", "sess")},
        "profile": {"id": fields.pop("profile", "p1")},
        "metadata": {"time": {"insert": fields.pop("time", "2026-11-29T10:00:00+00:00")}},
        **fields,
    }


def test_operations_are_applied_in_order_and_each_job_once():
    store = get_store()
    changes = [
        change("j1", ("set", "traits.name", "Ann"), ("increment", "stats.events", 2)),
        change("j2", ("set", "traits.name", "Bob"), ("append", "data.seen", "a"), ("add_tag", "tags", "vip")),
        change("j3", ("set_if_missing", "traits.name", "Zed"), ("append", "data.seen", ["a", "b"])),
        change("j4", ("merge", "aux", {"x": {"y": 1}}), ("increment", "stats.events", 1)),
    ]
    assert store.apply_profile_changes(changes).saved == 1
    assert store.apply_profile_changes(changes[1:]).saved == 1  # a redelivery: nothing applied twice
    profile = store.get("profile", "p1")
    assert profile["traits"]["name"] == "Bob"
    assert profile["data"]["seen"] == ["a", "b"]
    assert profile["tags"] == ["vip"]
    assert profile["aux"] == {"x": {"y": 1}}
    assert profile["stats"]["events"] == 3


def test_a_failing_job_is_reported_and_leaves_no_half_applied_change():
    store = get_store()
    result = store.apply_profile_changes(
        [
            change("ok", ("set", "traits.a", 1)),
            change("bad", ("set", "traits.b", 1), ("increment", "traits.a", "x")),
        ]
    )
    assert result.errors == {"p1": "cannot increment 'traits.a' by 'x'"}
    profile = store.get("profile", "p1")
    assert profile["traits"] == {"a": 1}
    # Redelivered with the good job: the good one is skipped, the bad one fails again.
    result = store.apply_profile_changes([change("ok", ("set", "traits.a", 5))])
    assert not result.errors and store.get("profile", "p1")["traits"] == {"a": 1}


def test_saving_an_event_twice_keeps_one_document():
    store = get_store()
    store.save_events([event("e1"), event("e2", type="click")])
    store.save_events([event("e1")])
    assert store.count("event") == 2
    assert store.count("event", type="click") == 1
    assert store.get("event", "e2")["type"] == "click"


def test_search_and_count_filter_by_profile_session_and_type():
    store = get_store()
    store.save_events(
        [
            event("e1", profile="p1", session="s1", time="2026-11-29T10:00:00+00:00"),
            event("e2", profile="p1", session="s2", time="2026-11-29T11:00:00+00:00"),
            event("e3", profile="p2", session="s3", type="click"),
        ]
    )
    assert [e["id"] for e in store.search("event", profile_id="p1")] == ["e2", "e1"]  # newest first
    assert store.count("event", session_id="s3", type="click") == 1
    with pytest.raises(ValueError, match="cannot filter events by colour"):
        store.count("event", colour="red")


def test_sessions_merge_context_and_properties():
    store = get_store()
    first = SessionChange(id="s1", profile_id="p1", source_id="src", time="2026-11-29T10:00:00+00:00", new=True,
                          context={"browser": {"name": "x"}}, properties={"a": 1})  # fmt: skip
    second = SessionChange(id="s1", profile_id="p1", source_id="src", time="2026-11-29T10:05:00+00:00", new=False,
                           context={"browser": {"version": 2}}, properties={"b": 2})  # fmt: skip
    store.save_sessions([first])
    store.save_sessions([second])
    session = store.get("session", "s1")
    assert session["context"] == {"browser": {"name": "x", "version": 2}}
    assert session["properties"] == {"a": 1, "b": 2}
    assert session["metadata"]["time"] == {"insert": first.time, "update": second.time}
    assert store.count("session", profile_id="p1") == 1
