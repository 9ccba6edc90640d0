"""Applying profile operations (storage/documents.py): every operation kind, failures left out
alone, idempotence by job id and by event id, the remembered windows. Pure functions over dicts."""

from __future__ import annotations

import base64
import copy
import hashlib

import pytest

from storage.documents import (
    APPLIED_EVENTS_KEPT,
    APPLIED_JOBS_KEPT,
    OLD_PACKED_PREFIX,
    OLD_SLOT,
    PACKED_PREFIX,
    SLOT,
    Applied,
    FailedOperation,
    Window,
    apply_changes,
    apply_operation,
    deep_merge,
    group_by_profile,
    merge_session,
    new_profile,
)
from storage.jobs import ProfileChange, ProfileOperation, SessionChange

pytestmark = pytest.mark.unit

NOW = "2026-01-02T03:04:05+00:00"
LATER = "2026-01-02T03:05:00+00:00"


def op(kind: str, path: str, value: object = None, event: str | None = None) -> ProfileOperation:
    return ProfileOperation(kind, path, value, event=event)


def change(job_id: str, *operations: ProfileOperation, profile_id: str = "p1") -> ProfileChange:
    return ProfileChange(profile_id=profile_id, job_id=job_id, operations=list(operations))


def remembered(jobs: tuple[str, ...] = (), events: tuple[str, ...] = ()) -> Applied:
    """What a profile remembers after applying these job and event ids, oldest first."""
    return Applied.of(list(jobs), list(events))


def applied_to(doc: dict, *operations: ProfileOperation) -> dict:
    doc = copy.deepcopy(doc)
    for operation in operations:
        apply_operation(doc, operation)
    return doc


# new_profile and deep_merge


def test_a_new_profile_has_every_root_empty():
    profile = new_profile("p1", now=NOW)
    assert profile["id"] == "p1"
    visit = {"last": None, "current": None, "count": 0}
    assert profile["metadata"]["time"] == {"create": NOW, "update": NOW, "visit": visit}
    assert profile["stats"] == {"events": 0}
    lists, objects = ("ids", "segments", "tags"), ("traits", "data", "interests", "consents", "aux", "misc")
    assert set(profile) == {"id", "metadata", "stats", *lists, *objects}
    assert all(profile[root] == [] for root in lists) and all(profile[root] == {} for root in objects)
    first, second = new_profile("a", now=NOW), new_profile("b", now=NOW)
    first["traits"]["x"] = 1
    assert second["traits"] == {}  # nothing shared between profiles


def test_deep_merge_merges_objects_and_replaces_everything_else():
    target = {"a": {"b": 1, "c": {"d": 2}}, "list": [1], "x": {"y": 1}}
    update = {"a": {"c": {"e": 3}, "f": 4}, "list": [2], "x": 5, "new": {"n": [1]}}
    result = deep_merge(target, update)
    assert result is target
    assert target == {"a": {"b": 1, "c": {"d": 2, "e": 3}, "f": 4}, "list": [2], "x": 5, "new": {"n": [1]}}
    update["new"]["n"].append(2)
    assert target["new"] == {"n": [1]}  # copied, not shared


def test_deep_merge_replaces_a_non_object_with_an_object():
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert deep_merge({"a": {"b": 2}}, {"a": None}) == {"a": None}


# apply_operation, each kind


def test_set_creates_the_objects_on_the_way_and_copies_the_value():
    value = {"city": "Gdansk"}
    doc = applied_to({"traits": {}}, op("set", "traits.address.home", value))
    assert doc == {"traits": {"address": {"home": {"city": "Gdansk"}}}}
    value["city"] = "changed"
    assert doc["traits"]["address"]["home"]["city"] == "Gdansk"


def test_set_replaces_a_none_on_the_way():
    assert applied_to({"traits": None}, op("set", "traits.a", 1)) == {"traits": {"a": 1}}


def test_set_if_missing_sets_only_a_missing_or_null_value():
    assert applied_to({}, op("set_if_missing", "traits.a", 1)) == {"traits": {"a": 1}}
    assert applied_to({"traits": {"a": None}}, op("set_if_missing", "traits.a", 1)) == {"traits": {"a": 1}}
    assert applied_to({"traits": {"a": 0}}, op("set_if_missing", "traits.a", 1)) == {"traits": {"a": 0}}
    assert applied_to({"traits": {"a": "x"}}, op("set_if_missing", "traits.a", 1)) == {"traits": {"a": "x"}}


def test_set_if_missing_on_a_present_value_creates_nothing_on_the_way():
    assert applied_to({}, op("set_if_missing", "traits.a", None)) == {"traits": {"a": None}}


@pytest.mark.parametrize("kind", ["append", "add_tag"])
def test_append_adds_items_not_already_there(kind):
    doc = applied_to({"data": {"skus": ["a"]}}, op(kind, "data.skus", "b"), op(kind, "data.skus", ["a", "c", "c"]))
    assert doc == {"data": {"skus": ["a", "b", "c"]}}
    assert applied_to({}, op(kind, "data.skus", "x")) == {"data": {"skus": ["x"]}}
    assert applied_to({}, op(kind, "segments", {"k": 1})) == {"segments": [{"k": 1}]}


@pytest.mark.parametrize("kind", ["append", "add_tag"])
def test_append_to_a_non_list_fails(kind):
    with pytest.raises(ValueError, match=f"cannot {kind} to 'data.x': it is not a list"):
        apply_operation({"data": {"x": "text"}}, op(kind, "data.x", "a"))


def test_remove_takes_out_an_item_or_a_list_of_items():
    doc = {"segments": ["a", "b", "c", "b"]}
    assert applied_to(doc, op("remove", "segments", "b")) == {"segments": ["a", "c"]}
    assert applied_to(doc, op("remove", "segments", ["a", "c", "z"])) == {"segments": ["b", "b"]}


def test_remove_from_a_missing_list_keeps_it_missing_and_from_a_non_list_fails():
    assert applied_to({}, op("remove", "data.list", "a")) == {}
    assert applied_to({"data": {"list": None}}, op("remove", "data.list", "a")) == {"data": {"list": None}}
    with pytest.raises(ValueError, match=r"cannot remove from 'data.x': it is not a list"):
        apply_operation({"data": {"x": 3}}, op("remove", "data.x", 3))


def test_increment_adds_and_a_negative_value_decrements():
    doc = applied_to({"stats": {"events": 2}}, op("increment", "stats.events", 3), op("increment", "stats.events", -1))
    assert doc == {"stats": {"events": 4}}
    assert applied_to({}, op("increment", "stats.spent", 1.5)) == {"stats": {"spent": 1.5}}
    assert applied_to({"stats": {"x": None}}, op("increment", "stats.x", 2)) == {"stats": {"x": 2}}


@pytest.mark.parametrize(
    ("doc", "value", "message"),
    [
        ({}, "1", r"cannot increment 'stats.x' by '1'"),
        ({}, True, r"cannot increment 'stats.x' by True"),
        ({}, None, r"cannot increment 'stats.x' by None"),
        ({"stats": {"x": "ten"}}, 1, r"cannot increment 'stats.x': it holds 'ten'"),
        ({"stats": {"x": [1]}}, 1, r"cannot increment 'stats.x': it holds \[1\]"),
        ({"stats": {"x": True}}, 1, r"cannot increment 'stats.x' by 1"),  # a boolean is not a count
    ],
)
def test_increment_needs_numbers(doc, value, message):
    with pytest.raises(ValueError, match=message):
        apply_operation(doc, op("increment", "stats.x", value))


def test_copy_takes_a_deep_copy_of_another_path():
    doc = applied_to({"traits": {"home": {"city": "A"}}}, op("copy", "data.billing", "traits.home"))
    assert doc["data"]["billing"] == {"city": "A"}
    doc["traits"]["home"]["city"] = "B"
    assert doc["data"]["billing"] == {"city": "A"}


def test_copy_of_a_missing_path_or_a_non_string_sets_none():
    assert applied_to({}, op("copy", "data.x", "traits.none")) == {"data": {"x": None}}
    assert applied_to({}, op("copy", "data.x", 5)) == {"data": {"x": None}}
    assert applied_to({"traits": {"a": 1}}, op("copy", "data.x", "traits.a.b")) == {
        "traits": {"a": 1},
        "data": {"x": None},
    }


def test_merge_deep_merges_an_object():
    doc = applied_to(
        {"consents": {"mail": {"granted": True}}}, op("merge", "consents", {"mail": {"at": NOW}, "sms": {}})
    )
    assert doc == {"consents": {"mail": {"granted": True, "at": NOW}, "sms": {}}}
    assert applied_to({}, op("merge", "data.new", {"a": 1})) == {"data": {"new": {"a": 1}}}


@pytest.mark.parametrize(("doc", "value"), [({"data": {"x": [1]}}, {"a": 1}), ({"data": {}}, [1]), ({}, "x")])
def test_merge_needs_objects_on_both_sides(doc, value):
    with pytest.raises(ValueError, match=r"cannot merge into 'data.x': both sides must be objects"):
        apply_operation(doc, op("merge", "data.x", value))


def test_delete_removes_the_leaf_and_creates_nothing_when_missing():
    assert applied_to({"traits": {"a": 1, "b": 2}}, op("delete", "traits.a")) == {"traits": {"b": 2}}
    assert applied_to({}, op("delete", "traits.a.b")) == {}
    assert applied_to({"traits": {}}, op("delete", "traits.a")) == {"traits": {}}


def test_an_unknown_operation_fails():
    with pytest.raises(ValueError, match="unknown profile operation 'explode'"):
        apply_operation({}, op("explode", "traits.a"))


@pytest.mark.parametrize("path", ["", "traits..a", ".a", "a.", None, 5])
def test_a_bad_path_fails(path):
    with pytest.raises(ValueError, match="bad profile path"):
        apply_operation({}, op("set", path, 1))


def test_a_path_through_a_non_object_fails_and_leaves_the_document_as_it_was():
    doc = {"traits": {"name": "Ann"}}
    with pytest.raises(
        ValueError, match=r"profile path 'traits.name.first' goes through 'name', which is not an object"
    ):
        apply_operation(doc, op("set", "traits.name.first", "A"))
    assert doc == {"traits": {"name": "Ann"}}


def test_a_failing_operation_creates_nothing_on_the_way():
    doc: dict = {}
    with pytest.raises(ValueError):
        apply_operation(doc, op("increment", "stats.deep.x", "NaN"))
    assert doc == {}


def test_odd_values_are_still_a_value_error():
    doc: dict = {}
    with pytest.raises(ValueError, match=r"^cannot set 'traits.a': "):  # a value that cannot be copied
        apply_operation(doc, op("set", "traits.a", (n for n in range(3))))
    assert doc == {}


# group_by_profile


def test_changes_are_grouped_per_profile_in_message_order():
    a1, b1, a2 = change("1", profile_id="a"), change("2", profile_id="b"), change("3", profile_id="a")
    assert group_by_profile([a1, b1, a2]) == {"a": [a1, a2], "b": [b1]}
    assert group_by_profile([]) == {}


# apply_changes


def test_operations_apply_in_order_and_the_input_is_never_modified():
    doc = new_profile("p1", now=NOW)
    before = copy.deepcopy(doc)
    result = apply_changes(
        doc,
        Applied(),
        [
            change("j1", op("set", "traits.n", 1, "e1"), op("increment", "stats.events", 1, "e1")),
            change("j2", op("increment", "traits.n", 10, "e2")),
        ],
        now=LATER,
    )
    assert doc == before
    assert result.changed and result.failed == []
    assert result.document["traits"] == {"n": 11} and result.document["stats"]["events"] == 1
    assert result.document["metadata"]["time"] == {**before["metadata"]["time"], "update": LATER}
    assert result.applied == remembered(("j1", "j2"), ("e1", "e2"))


def test_an_empty_document_gets_its_update_time():
    result = apply_changes({"id": "p1"}, Applied(), [change("j1", op("set", "traits.a", 1))], now=LATER)
    assert result.document == {"id": "p1", "traits": {"a": 1}, "metadata": {"time": {"update": LATER}}}


def test_a_redelivered_job_is_skipped_whole():
    first = apply_changes(new_profile("p1", now=NOW), Applied(), [change("j1", op("increment", "stats.x", 1))], now=NOW)
    again = apply_changes(first.document, first.applied, [change("j1", op("increment", "stats.x", 1))], now=LATER)
    assert again.document is first.document  # nothing to do: the same document back
    assert not again.changed and again.failed == []
    assert again.applied == first.applied
    assert again.document["stats"]["x"] == 1


def test_a_job_repeated_within_one_batch_applies_once():
    result = apply_changes(
        {},
        Applied(),
        [change("j1", op("increment", "stats.x", 1)), change("j1", op("increment", "stats.x", 1))],
        now=NOW,
    )
    assert result.document["stats"] == {"x": 1}
    assert result.applied.job_window == Window.read(["j1"])


def test_a_retried_event_under_a_new_job_is_skipped_but_the_new_job_is_remembered():
    first = apply_changes({}, Applied(), [change("j1", op("increment", "stats.x", 1, "e1"))], now=NOW)
    retry = apply_changes(
        first.document,
        first.applied,
        [change("j2", op("increment", "stats.x", 1, "e1"), op("increment", "stats.y", 1, "e2"))],
        now=LATER,
    )
    assert retry.document["stats"] == {"x": 1, "y": 1}
    assert retry.applied == remembered(("j1", "j2"), ("e1", "e2"))


def test_only_a_new_job_id_with_old_events_is_a_change_of_what_was_applied():
    first = apply_changes({}, Applied(), [change("j1", op("increment", "stats.x", 1, "e1"))], now=NOW)
    retry = apply_changes(first.document, first.applied, [change("j2", op("increment", "stats.x", 1, "e1"))], now=LATER)
    assert retry.document is first.document and retry.document["stats"] == {"x": 1}
    assert retry.changed  # the job id is new: what the profile remembers changed, its data did not
    assert retry.applied == remembered(("j1", "j2"), ("e1",))


def test_an_event_earlier_in_the_same_batch_is_skipped_too():
    result = apply_changes(
        {},
        Applied(),
        [change("j1", op("append", "data.l", "a", "e1")), change("j2", op("append", "data.l", "b", "e1"))],
        now=NOW,
    )
    assert result.document["data"] == {"l": ["a"]}
    assert result.applied == remembered(("j1", "j2"), ("e1",))


def test_operations_of_one_event_in_one_job_all_apply():
    result = apply_changes(
        {}, Applied(), [change("j1", op("increment", "stats.x", 1, "e1"), op("increment", "stats.x", 1, "e1"))], now=NOW
    )
    assert result.document["stats"] == {"x": 2}
    assert result.applied.event_window == Window.read(["e1"])


def test_operations_without_an_event_are_never_skipped_by_event():
    first = apply_changes({}, Applied(), [change("run-1", op("increment", "stats.x", 1))], now=NOW)
    second = apply_changes(first.document, first.applied, [change("run-2", op("increment", "stats.x", 1))], now=NOW)
    assert second.document["stats"] == {"x": 2}
    assert second.applied == remembered(("run-1", "run-2"), ())


def test_one_failing_operation_is_left_out_and_reported_and_the_rest_applies():
    doc = {"id": "p1", "traits": {"name": "Ann"}}
    result = apply_changes(
        doc,
        Applied(),
        [
            change(
                "j1",
                op("set", "traits.a", 1, "e1"),
                op("increment", "traits.name", 1, "e1"),
                op("set", "traits.b", 2, "e1"),
            ),
            change("j2", op("append", "traits.name", "x", "e2"), op("set", "traits.c", 3, "e2")),
        ],
        now=NOW,
    )
    assert result.document["traits"] == {"name": "Ann", "a": 1, "b": 2, "c": 3}
    assert result.failed == [
        FailedOperation("p1", "e1", "increment traits.name", "cannot increment 'traits.name': it holds 'Ann'"),
        FailedOperation("p1", "e2", "append traits.name", "cannot append to 'traits.name': it is not a list"),
    ]
    assert result.applied == remembered(("j1", "j2"), ("e1", "e2"))  # a failed operation is not retried
    assert doc == {"id": "p1", "traits": {"name": "Ann"}}


def test_an_operation_that_fails_only_because_of_an_earlier_one_still_fails_alone():
    result = apply_changes(
        {"id": "p1"},
        Applied(),
        [change("j1", op("set", "data.x", "text"), op("increment", "data.x", 1), op("set", "data.y", 1))],
        now=NOW,
    )
    assert result.document["data"] == {"x": "text", "y": 1}
    assert [f.operation for f in result.failed] == ["increment data.x"]
    assert result.failed[0].event_id is None


def test_when_every_operation_fails_the_document_still_changes_its_update_time_only():
    result = apply_changes(
        {"id": "p1", "traits": {"n": "x"}}, Applied(), [change("j1", op("increment", "traits.n", 1))], now=NOW
    )
    assert result.document == {"id": "p1", "traits": {"n": "x"}, "metadata": {"time": {"update": NOW}}}
    assert len(result.failed) == 1 and result.changed


def test_a_job_without_operations_is_remembered_without_changing_the_document():
    doc = {"id": "p1"}
    result = apply_changes(doc, Applied(), [change("j1")], now=NOW)
    assert result.document is doc and result.changed and result.applied == remembered(("j1",))
    assert not apply_changes(doc, Applied(), [], now=NOW).changed


def test_the_last_1000_jobs_are_remembered_and_an_older_one_would_apply_again():
    assert APPLIED_JOBS_KEPT == 1000
    changes = [change(f"j{i}", op("increment", "stats.x", 1)) for i in range(APPLIED_JOBS_KEPT + 1)]
    result = apply_changes({}, Applied(), changes, now=NOW)
    assert result.document["stats"]["x"] == APPLIED_JOBS_KEPT + 1
    assert result.applied.job_window == Window.read([f"j{i}" for i in range(1, APPLIED_JOBS_KEPT + 1)])
    assert len(result.applied.job_window) == APPLIED_JOBS_KEPT and "j0" not in result.applied.job_window
    kept = apply_changes(result.document, result.applied, [change("j1", op("increment", "stats.x", 1))], now=NOW)
    assert kept.document["stats"]["x"] == APPLIED_JOBS_KEPT + 1
    forgotten = apply_changes(result.document, result.applied, [change("j0", op("increment", "stats.x", 1))], now=NOW)
    assert forgotten.document["stats"]["x"] == APPLIED_JOBS_KEPT + 2


def test_the_last_1000_event_ids_are_remembered_and_an_older_one_would_apply_again():
    assert APPLIED_EVENTS_KEPT == 1000
    events = [f"e{i}" for i in range(APPLIED_EVENTS_KEPT + 1)]
    first = apply_changes({}, Applied(), [change("j1", *[op("increment", "stats.x", 1, e) for e in events])], now=NOW)
    assert first.document["stats"]["x"] == APPLIED_EVENTS_KEPT + 1
    assert first.applied.event_window == Window.read(events[1:])
    retry = [op("increment", "stats.x", 1, "e1"), op("increment", "stats.x", 1, "e0")]
    again = apply_changes(first.document, first.applied, [change("j2", *retry)], now=NOW)
    assert again.document["stats"]["x"] == APPLIED_EVENTS_KEPT + 2  # e1 skipped, e0 forgotten: applied
    assert again.applied.event_window == Window.read([*events[2:], "e0"])
    assert len(again.applied.event_window) == APPLIED_EVENTS_KEPT


def test_applied_of_reads_the_packed_form_the_lists_of_ids_stored_before_or_nothing():
    assert Applied.of(None, None) == Applied() == Applied.of([], [])
    assert Applied().jobs == [] and Applied().events == []  # empty windows store as before
    packed = remembered(("j1",), ("e1", "e2"))
    assert packed.jobs[0].startswith(PACKED_PREFIX) and len(packed.jobs) == 1
    assert Applied.of(packed.jobs, packed.events) == packed  # what a store writes reads back the same
    assert Applied.of(["j1"], ("e1", "e2")) == packed  # the old form: the same ids, the same windows
    assert "j1" in packed.job_window and "e2" in packed.event_window and "e3" not in packed.event_window
    with pytest.raises(ValueError):
        Applied.of([PACKED_PREFIX + "x" * (SLOT + 1)], None)  # not whole slots: damaged, never guessed at


def test_a_window_of_120_bit_digests_stored_before_reads_as_the_same_ids():
    # The form written until 2026-11-30: each id's whole 120-bit BLAKE2b digest in base64.
    def old_form(ids):
        digests = (base64.b64encode(hashlib.blake2b(i.encode(), digest_size=15).digest()).decode() for i in ids)
        return [OLD_PACKED_PREFIX + "".join(digests)]

    jobs = [f"00000000-0000-4000-8000-{n:012d}" for n in range(APPLIED_JOBS_KEPT)]
    before = Applied.of(old_form(jobs), old_form(["e1", "e2"]))
    assert before == Applied.of(jobs, ["e1", "e2"])  # converted exactly, nothing forgotten
    assert jobs[0] in before.job_window and "e2" in before.event_window and "e3" not in before.event_window
    assert before.jobs[0].startswith(PACKED_PREFIX) and len(before.jobs[0]) == len(PACKED_PREFIX) + SLOT * len(jobs)
    redelivered = apply_changes({}, before, [change(jobs[-1], op("increment", "stats.x", 1))], now=NOW)
    assert not redelivered.changed
    with pytest.raises(ValueError):
        Applied.of([OLD_PACKED_PREFIX + "x" * (OLD_SLOT + 1)], None)


def test_a_profile_stored_with_lists_of_ids_skips_its_applied_jobs_and_events():
    stored = {"applied_jobs": ["j1", "j2"], "applied_events": ["e1"]}  # as written before the packed form
    before = Applied.of(stored["applied_jobs"], stored["applied_events"])
    result = apply_changes(
        {"stats": {"x": 1}},
        before,
        [change("j2", op("increment", "stats.x", 1)), change("j3", op("increment", "stats.x", 1, "e1"))],
        now=NOW,
    )
    assert result.document["stats"] == {"x": 1}
    assert result.applied == remembered(("j1", "j2", "j3"), ("e1",))


def test_full_windows_are_stored_in_two_strings_of_one_slot_per_id():
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(APPLIED_JOBS_KEPT)]
    full = Applied.of(ids, ids[:APPLIED_EVENTS_KEPT])
    assert len(full.jobs[0]) == len(PACKED_PREFIX) + SLOT * APPLIED_JOBS_KEPT
    assert len(full.events[0]) == len(PACKED_PREFIX) + SLOT * APPLIED_EVENTS_KEPT


def test_a_match_across_two_slots_is_not_a_remembered_id():
    window = Window.read(["j1", "j2"])
    straddling = window.packed[SLOT // 2 : SLOT // 2 + SLOT]
    assert window.packed.find(straddling) == SLOT // 2
    assert not window.has(straddling)
    assert window.has(window.packed[SLOT : 2 * SLOT])


def test_a_document_that_is_not_json_is_refused_rather_than_shared():
    doc = {"id": "p1", "data": {"when": object()}}
    with pytest.raises(TypeError):
        apply_changes(doc, Applied(), [change("j1", op("set", "traits.a", 1))], now=NOW)


# merge_session


def session_change(**fields) -> SessionChange:
    values = {"id": "s1", "profile_id": "p1", "source_id": "web", "time": NOW, "context": {}, "properties": {}}
    return SessionChange(**{**values, **fields})


def test_a_new_session_document():
    doc = merge_session(None, session_change(context={"browser": "ff"}, properties={"a": 1}))
    assert doc == {
        "id": "s1",
        "metadata": {"time": {"insert": NOW, "update": NOW}},
        "context": {"browser": "ff"},
        "properties": {"a": 1},
        "profile": {"id": "p1"},
        "source": {"id": "web"},
    }


def test_a_session_merges_context_keeps_the_latest_time_and_may_lose_its_profile():
    doc = merge_session(None, session_change(time=LATER, context={"page": {"a": 1}}))
    doc = merge_session(doc, session_change(time=NOW, profile_id=None, source_id="app", context={"page": {"b": 2}}))
    assert doc["context"] == {"page": {"a": 1, "b": 2}}
    assert doc["metadata"]["time"] == {"insert": LATER, "update": LATER}  # an older change does not move it back
    assert doc["profile"] is None and doc["source"] == {"id": "app"}
