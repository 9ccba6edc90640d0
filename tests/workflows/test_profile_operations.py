"""storage.documents.apply_operation: the remove and delete operations, negative increments,
ValueError for bad input, and no partial change when an operation fails."""

from __future__ import annotations

import copy

import pytest

from storage.documents import apply_operation
from storage.jobs import ProfileOperation


def doc() -> dict:
    return {"traits": {"name": "Ann", "colours": ["red", "blue", "green"], "n": 5}, "tags": ["a", "b"]}


def applied(operation: ProfileOperation) -> dict:
    document = doc()
    apply_operation(document, operation)
    return document


def test_remove_takes_an_item_or_a_list_and_ignores_a_missing_list():
    assert applied(ProfileOperation("remove", "traits.colours", "blue"))["traits"]["colours"] == ["red", "green"]
    assert applied(ProfileOperation("remove", "traits.colours", ["red", "x"]))["traits"]["colours"] == ["blue", "green"]
    assert applied(ProfileOperation("remove", "tags", "a"))["tags"] == ["b"]
    assert applied(ProfileOperation("remove", "traits.none.deeper", "x")) == doc()  # creates nothing


def test_delete_removes_a_field_and_a_missing_one_is_fine():
    assert "name" not in applied(ProfileOperation("delete", "traits.name"))["traits"]
    assert applied(ProfileOperation("delete", "traits.none.deeper")) == doc()


def test_a_negative_increment_decrements():
    assert applied(ProfileOperation("increment", "traits.n", -2))["traits"]["n"] == 3


def test_existing_operations_keep_their_behaviour():
    assert applied(ProfileOperation("set", "data.a.b", 1))["data"] == {"a": {"b": 1}}
    assert applied(ProfileOperation("set_if_missing", "traits.name", "Bob"))["traits"]["name"] == "Ann"
    assert applied(ProfileOperation("append", "traits.colours", ["red", "pink"]))["traits"]["colours"][-1] == "pink"
    assert applied(ProfileOperation("add_tag", "tags", "c"))["tags"] == ["a", "b", "c"]
    assert applied(ProfileOperation("copy", "data.name", "traits.name"))["data"] == {"name": "Ann"}
    assert applied(ProfileOperation("merge", "traits", {"x": {"y": 1}}))["traits"]["x"] == {"y": 1}
    assert applied(ProfileOperation("increment", "stats.new", 1))["stats"] == {"new": 1}


@pytest.mark.parametrize(
    "operation",
    [
        ProfileOperation("increment", "traits.name", 1),
        ProfileOperation("increment", "fresh.path.n", "1"),
        ProfileOperation("append", "traits.name", "x"),
        ProfileOperation("remove", "traits.name", "x"),
        ProfileOperation("merge", "fresh.path", [1]),
        ProfileOperation("set", "traits.name.first", "A"),
        ProfileOperation("set", "fresh..path", 1),
        ProfileOperation("set", None, 1),  # type: ignore[arg-type]
        ProfileOperation("set", 5, 1),  # type: ignore[arg-type]
        ProfileOperation("explode", "fresh.path", 1),
    ],
)
def test_bad_operations_raise_value_error_and_change_nothing(operation):
    document = doc()
    before = copy.deepcopy(document)
    with pytest.raises(ValueError):
        apply_operation(document, operation)
    assert document == before  # no parent object was created on the way
