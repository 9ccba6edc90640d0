"""The Store contract, run against the database store and against a real Elasticsearch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage.jobs import ProfileChange, ProfileOperation, SessionChange


def change(job: str, *ops: tuple, profile: str = "p1", event: str | None = None) -> ProfileChange:
    operations = [ProfileOperation(*op, event=event) for op in ops]
    return ProfileChange(profile_id=profile, job_id=job, operations=operations)


def event(event_id: str, **fields) -> dict:
    return {
        "id": event_id,
        "type": fields.pop("type", "page-view"),
        "source": {"id": fields.pop("source", "s1")},
        "session": {"id": fields.pop("session", "sess")},
        "profile": {"id": fields.pop("profile", "p1")},
        "metadata": {"time": {"insert": fields.pop("time", "2026-11-29T10:00:00+00:00")}},
        "properties": fields.pop("properties", {}),
        **fields,
    }


def test_an_event_id_stored_before_keeps_its_first_document(store):
    store.save_events([event("e1", type="purchase", session="dupA", properties={"total": 1})])
    result = store.save_events([event("e1", type="click", session="dupB", properties={"total": 999})])
    assert result.saved == 1 and not result.errors  # a retry is a success, and a no-op
    store.refresh()
    stored = store.get("event", "e1")
    assert (stored["type"], stored["session"], stored["properties"]) == ("purchase", {"id": "dupA"}, {"total": 1})
    assert store.count("event") == 1


def test_long_strings_and_odd_keys_that_track_accepts_are_stored(store):
    """What /track lets through (keys up to 256 characters without U+0000, any string up to
    the body limit) every store keeps: a document the store refused would be lost."""
    odd = {"": 1, "a..b": 2, ".": 3, "k" * 256: "v" * 40_000, "nul": "\x00", "big": 1.2e29}
    result = store.save_events([event("long", properties=odd, context={"page": {"title": "t" * 100_000}})])
    assert result.saved == 1 and not result.errors
    store.refresh()
    assert store.get("event", "long")["properties"] == odd
    profile_change = change("j1", ("set", "traits.bio", "b" * 40_000), ("merge", "data", {"k" * 256: 1}))
    assert not store.apply_profile_changes([profile_change]).errors
    assert store.get("profile", "p1")["traits"]["bio"] == "b" * 40_000


def test_bulk_saved_events_are_found_and_saving_again_duplicates_nothing(store):
    result = store.save_events([event("e1"), event("e2", type="click"), event("e3", time="2026-10-02T00:00:00+00:00")])
    assert result.saved == 3 and not result.errors
    store.save_events([event("e1"), event("e2", type="click")])  # a redelivery
    store.refresh()
    assert store.count("event") == 3
    assert store.get("event", "e2")["type"] == "click"
    assert store.get("event", "e3")["metadata"]["time"]["insert"].startswith("2026-10-02")
    assert store.get("event", "missing") is None


def test_an_event_is_read_by_id_as_soon_as_its_save_returned_without_a_refresh(store):
    """What bench/half_load.py counts as stored: durable and readable by id, before a search
    sees it. An event received just before a month ended is found from the next month."""
    now = datetime.now(UTC)
    assert store.save_events([event("rt", time=now.isoformat())]).saved == 1
    assert store.get_event("rt", received_before=now)["id"] == "rt"
    assert store.get_event("rt")["id"] == "rt"  # default: now
    store.save_events([event("eom", time="2026-10-31T23:59:59.900000+00:00")])
    assert store.get_event("eom", received_before=datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC))["id"] == "eom"
    assert store.get_event("missing", received_before=now) is None
    store.refresh()
    assert store.get("event", "rt")["id"] == "rt"


def test_profile_operations_are_applied_in_order_and_each_job_once(store):
    changes = [
        change("j1", ("set", "traits.name", "Ann"), ("increment", "stats.events", 2)),
        change("j2", ("set", "traits.name", "Bob"), ("append", "data.seen", "a"), ("add_tag", "tags", "vip")),
        change("j3", ("set_if_missing", "traits.name", "Zed"), ("append", "data.seen", ["a", "b"])),
        change("j4", ("merge", "aux", {"x": {"y": 1}}), ("increment", "stats.events", 1)),
    ]
    assert store.apply_profile_changes(changes).saved == 1
    store.apply_profile_changes(changes[1:])  # a redelivery applies nothing twice
    profile = store.get("profile", "p1")
    assert profile["traits"]["name"] == "Bob"
    assert profile["data"]["seen"] == ["a", "b"]
    assert profile["tags"] == ["vip"]
    assert profile["aux"] == {"x": {"y": 1}}
    assert profile["stats"]["events"] == 3
    assert "applied_jobs" not in profile and "applied_events" not in profile


def test_an_operation_that_cannot_apply_is_reported_and_the_rest_of_its_job_applies(store):
    result = store.apply_profile_changes(
        [
            change("ok", ("set", "traits.a", 1)),
            change(
                "bad",
                ("set", "traits.b", 1),
                ("set", "traits.x", {"nested": True}),
                ("increment", "traits.x", 1),
                ("increment", "stats.events", 1),
                event="E9",
            ),
        ]
    )
    assert result.saved == 1 and not result.errors
    [failed] = result.failed_operations
    assert (failed.profile_id, failed.event_id, failed.operation) == ("p1", "E9", "increment traits.x")
    assert "traits.x" in failed.reason
    profile = store.get("profile", "p1")
    assert profile["traits"] == {"a": 1, "b": 1, "x": {"nested": True}}
    assert profile["stats"]["events"] == 1


def test_the_operations_of_one_event_apply_once_whatever_job_carries_them(store):
    """A client retrying a request sends the same events in a new job."""
    first = change("job-1", ("increment", "stats.events", 1), ("add_tag", "tags", "a"), event="E1")
    retry = change("job-2", ("increment", "stats.events", 1), ("add_tag", "tags", "a"), event="E1")
    retry.operations.append(ProfileOperation("increment", "stats.events", 1, event="E2"))  # and one new event
    store.apply_profile_changes([first])
    store.apply_profile_changes([retry])
    store.apply_profile_changes([change("job-3", ("increment", "stats.events", 1), event="E1"), first])
    assert store.get("profile", "p1")["stats"]["events"] == 2
    # In one batch too:
    store.apply_profile_changes([change("job-4", ("increment", "stats.n", 1), event="E4")] * 2)
    store.apply_profile_changes([change("job-5", ("increment", "stats.n", 1), event="E4")])
    assert store.get("profile", "p1")["stats"]["n"] == 1


def test_changes_of_many_profiles_in_one_batch(store):
    changes = [change(f"j{i}", ("increment", "stats.events", 1), profile=f"p{i % 7}") for i in range(70)]
    result = store.apply_profile_changes(changes)
    assert result.saved == 7 and not result.errors
    assert all(store.get("profile", f"p{i}")["stats"]["events"] == 10 for i in range(7))


def test_sessions_merge_context_and_properties(store):
    first = SessionChange(id="s1", profile_id="p1", source_id="src", time="2026-11-29T10:00:00+00:00",
                          context={"browser": {"name": "x"}}, properties={"a": 1})  # fmt: skip
    second = SessionChange(id="s1", profile_id="p1", source_id="src", time="2026-11-29T10:05:00+00:00",
                           context={"browser": {"version": 2}}, properties={"b": 2})  # fmt: skip
    store.save_sessions([first])
    store.save_sessions([second])
    session = store.get("session", "s1")
    assert session["context"] == {"browser": {"name": "x", "version": 2}}
    assert session["properties"] == {"a": 1, "b": 2}
    assert session["metadata"]["time"] == {"insert": first.time, "update": second.time}
    store.refresh()
    assert store.count("session", profile_id="p1") == 1


def test_search_and_count_filter_and_sort_newest_first(store):
    store.save_events(
        [
            event("e1", profile="p1", session="s1", time="2026-11-29T10:00:00+00:00"),
            event("e2", profile="p1", session="s2", time="2026-11-29T11:00:00+00:00"),
            event("e3", profile="p2", session="s3", type="click", source="s2"),
        ]
    )
    store.refresh()
    assert [e["id"] for e in store.search("event", profile_id="p1")] == ["e2", "e1"]
    assert store.count("event", session_id="s3", type="click") == 1
    assert store.count("event", source_id="s2") == 1
    with pytest.raises(ValueError, match="cannot filter events by colour"):
        store.count("event", colour="red")


def test_five_thousand_distinct_property_names_do_not_grow_the_mapping(store):
    events = [
        event(f"wide-{i}", properties={f"prop_{i}_{j}": j for j in range(100)} | {"shared": f"v{i % 3}"})
        for i in range(50)
    ]
    result = store.save_events(events)
    assert result.saved == 50 and not result.errors
    store.refresh()
    assert store.count("event") == 50
    assert store.get("event", "wide-49")["properties"]["prop_49_99"] == 99
    if hasattr(store, "es"):  # Elasticsearch: the mapping stayed what the template says
        from storage.backends.elasticsearch import index_name

        mappings = store.es.indices.get_mapping(index=index_name("event"))
        for index in mappings.values():
            properties = index["mappings"]["properties"]
            assert properties["properties"] == {"type": "flattened", "ignore_above": 8191}
            assert len(str(properties)) < 2000


# --- browsing and deleting ------------------------------------------------------------------


def session_change(session_id: str, profile: str, time: str, source: str = "s1") -> SessionChange:
    return SessionChange(id=session_id, profile_id=profile, source_id=source, time=time)


def test_browse_pages_events_newest_first_by_keyset_without_gaps_or_repeats(store):
    from storage.store import BrowseFilters

    # 25 events, some sharing a time: the id breaks the tie, so no page repeats or skips one.
    events = [event(f"e{i:02d}", time=f"2026-11-29T10:00:{i // 3:02d}+00:00") for i in range(25)]
    store.save_events(events)
    store.refresh()
    seen, cursor, pages = [], None, 0
    while True:
        page = store.browse("event", page_size=10, after=cursor)
        seen += [e["id"] for e in page.items]
        pages += 1
        if page.next is None:
            break
        cursor = page.next
    assert pages == 3
    expected = sorted(events, key=lambda e: (e["metadata"]["time"]["insert"], e["id"]), reverse=True)
    assert seen == [e["id"] for e in expected]
    assert store.browse("event", filters=BrowseFilters(id="e07")).items[0]["id"] == "e07"
    with pytest.raises(ValueError):
        store.browse("event", after="not-a-cursor")
    with pytest.raises(ValueError):
        store.browse("profile", filters=BrowseFilters(type="click"))


def test_browse_filters_events_by_type_source_profile_session_and_time(store):
    from datetime import UTC, datetime

    from storage.store import BrowseFilters

    store.save_events(
        [
            event("a", type="click", source="s1", profile="p1", session="x", time="2026-11-01T10:00:00+00:00"),
            event("b", type="click", source="s2", profile="p2", session="y", time="2026-11-02T10:00:00+00:00"),
            event("c", type="view", source="s1", profile="p1", session="y", time="2026-11-03T10:00:00+00:00"),
            event("d", type="view", source="s1", profile="p2", session="x", time="2026-12-01T10:00:00+00:00",
                  metadata={"time": {"insert": "2026-12-01T10:00:00+00:00"}, "valid": False,
                            "validation": ["$.properties.price: required"]}),
        ]
    )  # fmt: skip
    store.refresh()

    def ids(**filters) -> list[str]:
        return [e["id"] for e in store.browse("event", filters=BrowseFilters(**filters)).items]

    assert ids() == ["d", "c", "b", "a"]
    assert ids(type="click") == ["b", "a"]
    assert ids(source_id="s1") == ["d", "c", "a"]
    assert ids(profile_id="p2") == ["d", "b"]
    assert ids(session_id="y") == ["c", "b"]
    assert ids(profile_id="p1", type="view") == ["c"]
    nov2, dec = datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    assert ids(since=nov2) == ["d", "c", "b"]
    assert ids(since=nov2, until=dec) == ["c", "b"]
    flagged = store.browse("event", filters=BrowseFilters(id="d")).items[0]["metadata"]
    assert flagged["valid"] is False and flagged["validation"] == ["$.properties.price: required"]


def test_browse_lists_profiles_and_sessions_and_filters_sessions_by_profile(store):
    from storage.store import BrowseFilters

    store.apply_profile_changes([change("j1", ("set", "traits.name", "Ann"), profile="pa")])
    store.apply_profile_changes([change("j2", ("set", "traits.name", "Bob"), profile="pb")])
    store.save_sessions(
        [
            session_change("s-old", "pa", "2026-11-01T10:00:00+00:00"),
            session_change("s-new", "pa", "2026-11-05T10:00:00+00:00"),
            session_change("s-bob", "pb", "2026-11-03T10:00:00+00:00", source="s2"),
        ]
    )
    store.refresh()
    assert [p["id"] for p in store.browse("profile").items] == ["pb", "pa"]  # the newest first
    assert [p["id"] for p in store.browse("profile", filters=BrowseFilters(id="pa")).items] == ["pa"]
    assert "applied_jobs" not in store.browse("profile").items[0]
    assert [s["id"] for s in store.browse("session").items] == ["s-new", "s-bob", "s-old"]
    assert [s["id"] for s in store.browse("session", filters=BrowseFilters(profile_id="pa")).items] == [
        "s-new", "s-old",
    ]  # fmt: skip
    assert [s["id"] for s in store.browse("session", filters=BrowseFilters(source_id="s2")).items] == ["s-bob"]
    first = store.browse("session", page_size=2)
    assert [s["id"] for s in store.browse("session", page_size=2, after=first.next).items] == ["s-old"]


def test_deleting_a_profile_deletes_its_sessions_and_events_and_nothing_else(store):
    store.apply_profile_changes([change("j1", ("set", "traits.name", "Ann"), profile="gone")])
    store.apply_profile_changes([change("j2", ("set", "traits.name", "Bob"), profile="kept")])
    store.save_sessions([session_change("sg", "gone", "2026-11-01T10:00:00+00:00")])
    store.save_sessions([session_change("sk", "kept", "2026-11-01T10:00:00+00:00")])
    # Events in two months (two indices on Elasticsearch), not refreshed: the delete finds them.
    store.save_events(
        [
            event("g1", profile="gone", session="sg"),
            event("g2", profile="gone", session="sg", time="2026-10-02T00:00:00+00:00"),
            event("k1", profile="kept", session="sk"),
        ]
    )
    deleted = store.delete_profile("gone")
    assert (deleted.profiles, deleted.sessions, deleted.events) == (1, 1, 2)
    store.refresh()
    assert store.get("profile", "gone") is None and store.get("session", "sg") is None
    assert store.get("event", "g1") is None and store.get("event", "g2") is None
    assert store.get("profile", "kept") and store.get("session", "sk") and store.get("event", "k1")
    assert store.delete_profile("gone") == type(deleted)(profiles=0, sessions=0, events=0)
