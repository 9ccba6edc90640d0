"""References, profile paths, templates and conditions of the rule engine (tracking/rules/paths.py,
conditions.py): plain functions, no database."""

from __future__ import annotations

import pytest

from tracking.rules.conditions import check_condition, matches
from tracking.rules.paths import (
    WORKFLOW_ROOTS,
    check_profile_path,
    check_reference,
    check_template,
    get_path,
    is_reference,
    render,
    resolve,
)

pytestmark = pytest.mark.unit

SOURCES = {
    "event": {"type": "purchase", "properties": {"price": 120, "items": [{"sku": "A"}, {"sku": "B"}], "flag": True}},
    "payload": {"context": {"page": {"url": "https://shop.example.com/"}}},
    "session": {"context": {"browser": "firefox"}},
    "profile": None,
}


@pytest.mark.parametrize(
    "value",
    [
        "event@properties.product.id",
        "payload@context.page.url",
        "session@context",
        "profile@traits.name",
        "event@$x-y_1",
    ],
)
def test_a_reference_is_a_root_and_a_dot_path(value):
    assert is_reference(value)
    assert check_reference(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "properties.price",
        "event@",
        "event@a..b",
        "event@.a",
        "event@a.",
        "memory@x",
        "other@x",
        "event@a b",
        7,
        None,
        "",
    ],
)
def test_anything_else_is_refused_with_an_example(value):
    assert not is_reference(value)
    with pytest.raises(ValueError, match=r"is not a path: use <root>@<dot.path> .*event@properties.product.id"):
        check_reference(value)


def test_workflows_may_also_read_memory_but_rules_may_not():
    assert is_reference("memory@scratch.x", roots=WORKFLOW_ROOTS)
    assert check_reference("memory@scratch.x", roots=WORKFLOW_ROOTS) == "memory@scratch.x"
    with pytest.raises(ValueError, match="memory"):  # the message lists the roots allowed
        check_reference("other@x", roots=WORKFLOW_ROOTS)
    assert not is_reference("memory@scratch.x")


@pytest.mark.parametrize("path", ["traits.email", "data.a.b-c_1", "stats.events", "consents.marketing"])
def test_a_profile_path_names_a_field_under_an_allowed_root(path):
    assert check_profile_path(path) == path


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("traits..email", "is not a profile path"),
        ("traits.e mail", "is not a profile path"),
        (None, "is not a profile path"),
        ("", "is not a profile path"),
        ("metadata.time", "must start with one of: data, traits, ids"),
        ("id", "must start with one of"),
        ("stats", "is a whole root: name a field in it, such as stats.name"),
        ("ids", "is a whole root"),
    ],
)
def test_a_bad_profile_path_is_refused(path, message):
    with pytest.raises(ValueError, match=message):
        check_profile_path(path)


def test_only_ids_and_segments_take_a_list_operation_as_a_whole_root():
    assert check_profile_path("ids", list_operation=True) == "ids"
    assert check_profile_path("segments", list_operation=True) == "segments"
    with pytest.raises(ValueError, match="only ids and segments take append and add_tag as they are"):
        check_profile_path("traits", list_operation=True)


def test_get_path_walks_objects_and_list_indexes_and_gives_none_for_anything_missing():
    data = {"a": {"b": [10, {"c": "deep"}], "zero": 0, "none": None}}
    assert get_path(data, "a.b.0") == 10
    assert get_path(data, "a.b.1.c") == "deep"
    assert get_path(data, "a.zero") == 0  # a falsy value is a value
    assert get_path(data, "a.b.2") is None  # past the end
    assert get_path(data, "a.b.x") is None  # not an index
    assert get_path(data, "a.b.-1") is None  # no negative indexes
    assert get_path(data, "a.none.c") is None
    assert get_path(data, "a.zero.c") is None  # through a number
    assert get_path(None, "a") is None
    assert get_path("text", "a") is None


def test_resolve_reads_the_root_named_by_the_reference():
    assert resolve("event@properties.items.1.sku", SOURCES) == "B"
    assert resolve("payload@context.page.url", SOURCES) == "https://shop.example.com/"
    assert resolve("profile@traits.name", SOURCES) is None  # no profile
    assert resolve("session@context.os", SOURCES) is None


def test_render_replaces_references_and_keeps_everything_else_as_written():
    template = {
        "price": "event@properties.price",
        "list": ["event@properties.items.0.sku", "literal", 3, None],
        "nested": {"browser": "session@context.browser", "missing": "profile@traits.x"},
        "mail": "someone@example.com",  # an '@' that is not a reference is text
        "flag": False,
    }
    assert render(template, SOURCES) == {
        "price": 120,
        "list": ["A", "literal", 3, None],
        "nested": {"browser": "firefox", "missing": None},
        "mail": "someone@example.com",
        "flag": False,
    }


def test_render_reads_memory_only_with_the_workflow_roots():
    sources = {"memory": {"x": 1}}
    assert render("memory@x", sources) == "memory@x"
    assert render("memory@x", sources, roots=WORKFLOW_ROOTS) == 1


def test_check_template_accepts_text_and_valid_references():
    check_template({"a": "event@properties.x", "b": ["someone@example.com", 1, None], "c": "plain"})


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ({"a": {"b": "event@properties..x"}}, "template.a.b"),
        ({"a": ["ok", "session@"]}, r"template.a\[1\]"),
        ("profile@ bad", "template"),
    ],
)
def test_check_template_names_where_a_broken_reference_is(template, where):
    with pytest.raises(ValueError, match=rf"^{where}: .* is not a path"):
        check_template(template)


def test_check_template_with_the_workflow_roots_checks_memory_references():
    check_template({"a": "memory@x"}, roots=WORKFLOW_ROOTS)
    check_template({"a": "memory@x y"})  # not a rules root: plain text
    with pytest.raises(ValueError, match="is not a path"):
        check_template({"a": "memory@x y"}, roots=WORKFLOW_ROOTS)


# Conditions


@pytest.mark.parametrize(
    "condition",
    [
        {"path": "event@properties.price", "op": "gte", "value": 100},
        {"path": "event@properties.price", "op": "lt", "value": 1.5},
        {"path": "event@type", "op": "equals", "value": "purchase"},
        {"path": "event@type", "op": "exists"},
        {"path": "event@type", "op": "in", "value": ["a", "b"]},
        {"all": [{"path": "event@type", "op": "exists"}, {"not": {"path": "event@x", "op": "exists"}}]},
        {"any": [{"path": "event@type", "op": "exists"}]},
    ],
)
def test_a_valid_condition_passes_the_check(condition):
    check_condition(condition)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ([], "condition: expected an object"),
        ({}, "condition: use exactly one of all, any, not, or path/op/value"),
        ({"all": [], "any": []}, "use exactly one of"),
        ({"path": "event@x", "op": "exists", "extra": 1}, "condition: unexpected keys extra"),
        ({"not": {"path": "event@x", "op": "exists"}, "value": 1}, "unexpected keys value"),
        ({"all": []}, r"condition.all: expected a non-empty list of conditions"),
        ({"any": {"path": "event@x"}}, r"condition.any: expected a non-empty list"),
        ({"all": [{"path": "event@x", "op": "exists"}, 5]}, r"condition.all\[1\]: expected an object"),
        ({"not": {"path": "x", "op": "exists"}}, r"condition.not.path: 'x' is not a path"),
        ({"path": "event@x", "op": "matches"}, r"condition.op: 'matches' is not one of equals, exists, gt"),
        ({"path": "event@x", "op": "in", "value": "abc"}, "condition.value: 'in' needs a list"),
        ({"path": "event@x", "op": "gt", "value": "10"}, "condition.value: 'gt' needs a number"),
        ({"path": "event@x", "op": "lte", "value": True}, "'lte' needs a number"),
        ({"path": "event@x", "op": "gte"}, "'gte' needs a number"),
    ],
)
def test_a_bad_condition_is_refused_naming_where(condition, message):
    with pytest.raises(ValueError, match=message):
        check_condition(condition)


def test_check_condition_names_the_caller_location_and_accepts_memory_with_workflow_roots():
    with pytest.raises(ValueError, match=r"^trigger.condition: expected an object"):
        check_condition("x", "trigger.condition")
    check_condition({"path": "memory@x", "op": "exists"}, roots=WORKFLOW_ROOTS)
    with pytest.raises(ValueError, match="is not a path"):
        check_condition({"path": "memory@x", "op": "exists"})


def test_no_condition_matches_everything():
    assert matches(None, SOURCES)
    assert matches({}, SOURCES)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"path": "event@properties.price", "op": "gt", "value": 100}, True),
        ({"path": "event@properties.price", "op": "gt", "value": 120}, False),
        ({"path": "event@properties.price", "op": "gte", "value": 120}, True),
        ({"path": "event@properties.price", "op": "lt", "value": 120.5}, True),
        ({"path": "event@properties.price", "op": "lte", "value": 119}, False),
        ({"path": "event@properties.missing", "op": "lt", "value": 1}, False),  # None is not a number
        ({"path": "event@properties.flag", "op": "gte", "value": 0}, False),  # a boolean is not a number
        ({"path": "event@type", "op": "gt", "value": 0}, False),  # a string is not a number
        ({"path": "event@type", "op": "equals", "value": "purchase"}, True),
        ({"path": "event@type", "op": "not_equals", "value": "purchase"}, False),
        ({"path": "event@missing", "op": "not_equals", "value": "x"}, True),
        ({"path": "event@missing", "op": "equals", "value": None}, True),
        ({"path": "event@type", "op": "exists"}, True),
        ({"path": "event@missing", "op": "exists"}, False),
        ({"path": "event@type", "op": "in", "value": ["view", "purchase"]}, True),
        ({"path": "event@type", "op": "in", "value": ["view"]}, False),
        ({"path": "session@context.browser", "op": "equals", "value": "firefox"}, True),
        ({"path": "profile@traits.x", "op": "exists"}, False),
    ],
)
def test_a_comparison(condition, expected):
    assert matches(condition, SOURCES) is expected


def test_all_any_and_not_combine():
    yes = {"path": "event@type", "op": "exists"}
    no = {"path": "event@missing", "op": "exists"}
    assert matches({"all": [yes, yes]}, SOURCES)
    assert not matches({"all": [yes, no]}, SOURCES)
    assert matches({"any": [no, yes]}, SOURCES)
    assert not matches({"any": [no, no]}, SOURCES)
    assert matches({"not": no}, SOURCES)
    assert matches({"all": [{"any": [no, yes]}, {"not": {"all": [yes, no]}}]}, SOURCES)
