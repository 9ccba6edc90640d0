"""The /track payload checks (tracking/validation.py): check_structure, validate_track_payload,
json_type. Plain functions, no database."""

from __future__ import annotations

import pytest

from tracking.validation import (
    MAX_KEY_LENGTH,
    MAX_KEY_PATH_LENGTH,
    TIME_MESSAGE,
    PayloadInvalid,
    check_structure,
    json_type,
    validate_track_payload,
)

pytestmark = pytest.mark.unit


def errors_of(data: dict) -> list[dict[str, str]]:
    with pytest.raises(PayloadInvalid) as caught:
        validate_track_payload(data)
    assert str(caught.value) == f"{len(caught.value.errors)} error(s)"
    return caught.value.errors


def minimal(**fields) -> dict:
    return {"source": {"id": "web"}, **fields}


# json_type


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        ({}, "object"),
        ([], "array"),
        ("", "string"),
        (True, "boolean"),
        (False, "boolean"),
        (0, "number"),
        (1.5, "number"),
        ((), "tuple"),
        (b"x", "bytes"),
    ],
)
def test_json_type_names_the_json_type(value, name):
    assert json_type(value) == name


# check_structure


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def test_a_normal_payload_has_no_structural_problem():
    assert (
        check_structure({"events": [{"type": "x", "properties": {"a": [1, {"b": 2}]}}]}, max_depth=6) is None
    )  # 6 levels
    assert check_structure("scalar", max_depth=1) is None
    assert check_structure({}, max_depth=1) is None


def test_the_top_level_is_depth_one():
    assert check_structure({"a": 1}, max_depth=1) is None
    assert check_structure({"a": {}}, max_depth=1) == {
        "path": "$.a",
        "message": "Nested deeper than TRACK_MAX_DEPTH (1 levels).",
    }
    assert check_structure([[]], max_depth=1) == {
        "path": "$[0]",
        "message": "Nested deeper than TRACK_MAX_DEPTH (1 levels).",
    }


def test_scalars_do_not_count_as_a_level():
    assert check_structure({"a": [1, "x", None]}, max_depth=2) is None


def test_nesting_exactly_at_the_limit_passes_and_one_more_fails():
    assert check_structure(nested(10), max_depth=10) is None
    problem = check_structure(nested(11), max_depth=10)
    assert problem is not None and problem["message"] == "Nested deeper than TRACK_MAX_DEPTH (10 levels)."


def test_a_very_deep_payload_is_reported_without_recursion():
    deep: list = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    problem = check_structure({"events": deep}, max_depth=20)
    assert problem is not None and problem["path"].startswith("$.events[0][0]")


def test_a_long_key_is_refused_and_its_path_is_shortened():
    long_key = "k" * (MAX_KEY_LENGTH + 1)
    problem = check_structure({"properties": {long_key: 1}}, max_depth=5)
    assert problem == {
        "path": "$.properties." + "k" * 79,
        "message": f"A key must have at most {MAX_KEY_LENGTH} characters and no U+0000.",
    }
    assert check_structure({"k" * MAX_KEY_LENGTH: 1}, max_depth=5) is None


def test_a_key_with_u0000_is_refused():
    problem = check_structure({"a": [{"b\x00c": 1}]}, max_depth=5)
    assert problem is not None and problem["path"] == "$.a[0].b\x00c"
    assert "no U+0000" in problem["message"]


def test_keys_adding_up_to_too_long_a_path_are_refused():
    key = "k" * 200
    too_long: dict = {}
    node = too_long
    levels = MAX_KEY_PATH_LENGTH // (len(key) + 1) + 1
    for _ in range(levels):
        node[key] = {}
        node = node[key]
    problem = check_structure(too_long, max_depth=levels + 2)
    assert problem is not None
    assert problem["message"] == f"The keys of this path exceed {MAX_KEY_PATH_LENGTH} characters."


def test_list_indexes_do_not_add_to_the_key_path():
    key = "k" * 200
    per_level = MAX_KEY_PATH_LENGTH // (len(key) + 1)  # that many keys fit
    value: object = 1
    for _ in range(per_level):
        value = [[{key: value}]]
    assert check_structure(value, max_depth=10_000) is None


# validate_track_payload


def test_a_minimal_payload_is_filled_with_defaults():
    assert validate_track_payload(minimal()) == {
        "source": {"id": "web"},
        "session": None,
        "profile": None,
        "events": [],
        "context": {},
        "properties": {},
        "options": {"queue": False, "saveSession": True, "saveEvents": True, "saveProfile": True, "profile": False},
        "profile_less": False,
    }


def test_unknown_fields_are_kept_and_the_input_is_not_modified():
    data = minimal(extra={"a": 1}, options={"queue": True, "custom": "x"}, events=[{"type": "v", "custom": 2}])
    payload = validate_track_payload(data)
    assert payload["extra"] == {"a": 1}
    assert payload["options"]["custom"] == "x" and payload["options"]["queue"] is True
    assert payload["events"][0]["custom"] == 2
    assert data["events"] == [{"type": "v", "custom": 2}]


def test_an_event_is_normalized():
    (normalized,) = validate_track_payload(minimal(events=[{"type": "page-view"}]))["events"]
    assert normalized == {
        "id": None,
        "type": "page-view",
        "properties": {},
        "context": {},
        "options": {},
        "tags": [],
        "time": None,
    }


def test_session_and_profile_are_id_objects():
    payload = validate_track_payload(minimal(session={"id": "s1", "x": 1}, profile={"id": None}))
    assert payload["session"] == {"id": "s1", "x": 1}
    assert payload["profile"] == {"id": None}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, [{"path": "$.source", "message": "This field is required."}]),
        ({"source": "web"}, [{"path": "$.source", "message": "Expected an object but got string."}]),
        ({"source": {}}, [{"path": "$.source.id", "message": "This field is required."}]),
        ({"source": {"id": "  "}}, [{"path": "$.source.id", "message": "This field may not be blank."}]),
        ({"source": {"id": 5}}, [{"path": "$.source.id", "message": "Expected a string but got number."}]),
        (
            {"source": {"id": "s" * 101}},
            [{"path": "$.source.id", "message": "Ensure this field has no more than 100 characters."}],
        ),
        (minimal(events={"type": "x"}), [{"path": "$.events", "message": "Expected an array but got object."}]),
        (minimal(events=["x"]), [{"path": "$.events[0]", "message": "Expected an object but got string."}]),
        (minimal(events=[{}]), [{"path": "$.events[0].type", "message": "This field is required."}]),
        (minimal(context=[]), [{"path": "$.context", "message": "Expected an object but got array."}]),
        (minimal(properties=1), [{"path": "$.properties", "message": "Expected an object but got number."}]),
        (minimal(options="x"), [{"path": "$.options", "message": "Expected an object but got string."}]),
        (
            minimal(options={"queue": "yes"}),
            [{"path": "$.options.queue", "message": "Expected a boolean but got string."}],
        ),
        (minimal(profile_less=1), [{"path": "$.profile_less", "message": "Expected a boolean but got number."}]),
        (minimal(session="s1"), [{"path": "$.session", "message": "Expected an object but got string."}]),
        (minimal(profile={"id": 7}), [{"path": "$.profile.id", "message": "Expected a string but got number."}]),
        (
            minimal(session={"id": "x" * 256}),
            [{"path": "$.session.id", "message": "Ensure this field has no more than 255 characters."}],
        ),
    ],
)
def test_each_error_has_its_path_and_message(data, expected):
    assert errors_of(data) == expected


def test_every_error_is_listed_at_once_in_order():
    data = {
        "source": {"id": ""},
        "session": [],
        "events": [
            {"type": "ok"},
            {"type": 1, "properties": [], "context": "c", "options": 2, "tags": "t", "id": {"x": 1}, "time": "never"},
        ],
        "options": {"saveEvents": None, "profile": "no"},
    }
    assert errors_of(data) == [
        {"path": "$.source.id", "message": "This field may not be blank."},
        {"path": "$.session", "message": "Expected an object but got array."},
        {"path": "$.events[1].tags", "message": "Expected an array but got string."},
        {"path": "$.events[1].id", "message": "Expected a string but got object."},
        {"path": "$.events[1].type", "message": "Expected a string but got number."},
        {"path": "$.events[1].properties", "message": "Expected an object but got array."},
        {"path": "$.events[1].context", "message": "Expected an object but got string."},
        {"path": "$.events[1].options", "message": "Expected an object but got number."},
        {"path": "$.events[1].time", "message": TIME_MESSAGE},
        {"path": "$.options.profile", "message": "Expected a boolean but got string."},
    ]


def test_null_options_take_their_defaults():
    payload = validate_track_payload(minimal(options={"saveEvents": None, "queue": None}, events=None, context=None))
    assert payload["options"]["saveEvents"] is True and payload["options"]["queue"] is False
    assert payload["events"] == [] and payload["context"] == {}


def test_tags_are_required_non_blank_strings():
    assert validate_track_payload(minimal(events=[{"type": "v", "tags": None}]))["events"][0]["tags"] == []
    assert validate_track_payload(minimal(events=[{"type": "v", "tags": ["a", "b"]}]))["events"][0]["tags"] == [
        "a",
        "b",
    ]
    assert errors_of(minimal(events=[{"type": "v", "tags": ["a", None, " ", 3]}])) == [
        {"path": "$.events[0].tags[1]", "message": "This field is required."},
        {"path": "$.events[0].tags[2]", "message": "This field may not be blank."},
        {"path": "$.events[0].tags[3]", "message": "Expected a string but got number."},
    ]


def event_time(value: object) -> str | None:
    return validate_track_payload(minimal(events=[{"type": "v", "time": value}]))["events"][0]["time"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("2024-05-01T12:00:00+00:00", "2024-05-01T12:00:00+00:00"),
        ("2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00+00:00"),  # converted to UTC
        ("2024-05-01T12:00:00", "2024-05-01T12:00:00+00:00"),  # naive: taken as UTC
        ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00+00:00"),
        (1714564800, "2024-05-01T12:00:00+00:00"),  # epoch seconds
        (1714564800.5, "2024-05-01T12:00:00.500000+00:00"),
        (1714564800000, "2024-05-01T12:00:00+00:00"),  # epoch milliseconds
        (10**11 - 1, "5138-11-16T09:46:39+00:00"),  # the largest value read as seconds
        (10**11, "1973-03-03T09:46:40+00:00"),  # the smallest read as milliseconds
        (-1714564800000, "1915-09-02T12:00:00+00:00"),  # negative milliseconds too
        ({"create": "2024-05-01T12:00:00+00:00", "insert": "ignored"}, "2024-05-01T12:00:00+00:00"),
        ({"insert": "only the server's keys"}, None),
    ],
)
def test_a_time_is_normalized_to_iso_utc(value, expected):
    assert event_time(value) == expected


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("yesterday", "$.events[0].time"),
        (True, "$.events[0].time"),
        ([2024], "$.events[0].time"),
        (10**20, "$.events[0].time"),  # overflows
        (float("inf"), "$.events[0].time"),
        ({"create": "nope"}, "$.events[0].time.create"),
        ({"create": False}, "$.events[0].time.create"),
    ],
)
def test_a_bad_time_is_an_error_with_the_accepted_forms(value, path):
    assert errors_of(minimal(events=[{"type": "v", "time": value}])) == [{"path": path, "message": TIME_MESSAGE}]
