"""The pre-processing rule engine (tracking/rules/engine.py): schema and mapping checks, the
compiled RuleSet, LazySources and preprocess_event. Rules are unsaved model instances: no database."""

from __future__ import annotations

import pytest

from storage.jobs import ProfileOperation
from tracking.models import EventMapping, EventReshaper, EventValidator
from tracking.rules.engine import (
    MAPPING_OPERATIONS,
    LazySources,
    RuleSet,
    check_mapping_conflicts,
    check_mappings,
    check_schema,
    preprocess_event,
    preview,
)

pytestmark = pytest.mark.unit

PRICE_SCHEMA = {
    "type": "object",
    "properties": {"total": {"type": "number"}, "currency": {"type": "string"}},
    "required": ["total"],
}


def validator(schema=PRICE_SCHEMA, *, name="Purchase", event_type="purchase", source_id=None, target="properties"):
    return EventValidator(name=name, event_type=event_type, source_id=source_id, target=target, schema=schema)


def reshaper(properties, *, name="R", event_type="purchase", source_id=None, priority=100, keep=False, **templates):
    return EventReshaper(
        name=name,
        event_type=event_type,
        source_id=source_id,
        priority=priority,
        properties_template=properties,
        keep_original_properties=keep,
        context_template=templates.get("context"),
        session_context_template=templates.get("session_context"),
    )


def mapping(*entries, name="M", event_type="purchase", source_id=None, condition=None):
    return EventMapping(
        name=name,
        event_type=event_type,
        source_id=source_id,
        condition=condition,
        mappings=[{"event": e, "profile": p, "operation": o} for e, p, o in entries],
    )


def rules(*, validators=(), reshapers=(), mappings=()) -> RuleSet:
    return RuleSet.compile(validators=validators, reshapers=reshapers, mappings=mappings)


def event(event_type="purchase", *, id="e1", **properties) -> dict:
    return {"id": id, "type": event_type, "properties": properties, "context": {"page": {"url": "/a"}}}


def sources(**values) -> LazySources:
    return LazySources({}, **values)


# check_schema


def test_a_valid_schema_with_internal_refs_passes():
    check_schema(
        {
            "$defs": {"money": {"type": "number", "minimum": 0}},
            "type": "object",
            "properties": {"total": {"$ref": "#/$defs/money"}, "items": {"items": {"$ref": "#/$defs/money"}}},
        }
    )
    check_schema({})  # accepts anything


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([], "A JSON Schema must be a JSON object."),
        ("object", "A JSON Schema must be a JSON object."),
        ({"type": "nonsense"}, "Invalid JSON Schema: "),
        ({"properties": {"a": {"$ref": "https://example.com/s.json"}}}, "points outside the schema"),
        ({"properties": {"a": {"$ref": "other.json#/x"}}}, "points outside the schema"),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, r"\$ref '#/\$defs/missing' does not resolve"),
        ({"allOf": [{"$ref": "#/nowhere"}]}, "does not resolve inside the schema"),
    ],
)
def test_a_bad_schema_is_refused(schema, message):
    with pytest.raises(ValueError, match=message):
        check_schema(schema)


# check_mappings and conflicts


def test_valid_mappings_pass():
    check_mappings(
        [
            {"event": "event@properties.email", "profile": "traits.email", "operation": "equals"},
            {"event": "event@properties.sku", "profile": "ids", "operation": "append"},
            {"event": "event@properties.tag", "profile": "segments", "operation": "add_tag"},
            {"event": "payload@context.x", "profile": "data.x", "operation": "equals_if_not_exists"},
            {"event": "event@properties.qty", "profile": "stats.items", "operation": "increment"},
        ]
    )


@pytest.mark.parametrize(
    ("mappings", "message"),
    [
        ([], "Expected a non-empty list"),
        ({"event": "event@x"}, "Expected a non-empty list"),
        (["x"], 'mapping 1: expected exactly the keys "event", "profile" and "operation"'),
        ([{"event": "event@x", "profile": "traits.x"}], "mapping 1: expected exactly the keys"),
        (
            [{"event": "event@x", "profile": "traits.x", "operation": "equals", "extra": 1}],
            "mapping 1: expected exactly the keys",
        ),
        (
            [
                {"event": "event@x", "profile": "traits.x", "operation": "equals"},
                {"event": "event@x", "profile": "traits.y", "operation": "delete"},
            ],
            "mapping 2: operation 'delete' is not one of equals, equals_if_not_exists, append",
        ),
        ([{"event": "properties.x", "profile": "traits.x", "operation": "equals"}], "mapping 1: 'properties.x' is not"),
        (
            [{"event": "event@x", "profile": "metadata.x", "operation": "equals"}],
            "mapping 1: profile path 'metadata.x'",
        ),
        ([{"event": "event@x", "profile": "ids", "operation": "equals"}], "mapping 1: profile path 'ids' is a whole"),
    ],
)
def test_bad_mappings_are_refused_naming_the_mapping(mappings, message):
    with pytest.raises(ValueError, match=message):
        check_mappings(mappings)


def test_a_whole_list_root_takes_append_and_add_tag():
    check_mappings([{"event": "event@x", "profile": "ids", "operation": "append"}])
    check_mappings([{"event": "event@x", "profile": "segments", "operation": "add_tag"}])


def entry(profile: str, operation: str) -> dict[str, str]:
    return {"event": "event@properties.x", "profile": profile, "operation": operation}


def test_mappings_that_can_apply_together_pass():
    check_mapping_conflicts(
        [entry("stats.a", "increment"), entry("stats.a", "increment"), entry("data.list", "append")],
        [entry("data.list", "add_tag"), entry("traits.x", "equals"), entry("traits.x.y", "equals")],
    )
    check_mapping_conflicts([entry("stats.a", "equals"), entry("stats.a", "increment")])  # known only when run
    check_mapping_conflicts([entry("stats.a", "increment"), entry("stats.ab", "increment")])  # a prefix, not a parent


def test_one_path_as_a_number_and_a_list_is_refused():
    with pytest.raises(ValueError, match=r"'data.x' cannot be a number \(increment\) and a list \(append\) at once"):
        check_mapping_conflicts([entry("data.x", "increment")], [entry("data.x", "append")])


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (entry("data.x", "increment"), entry("data.x.y", "equals")),
        (entry("data.x.y", "equals"), entry("data.x", "append")),
    ],
)
def test_a_path_inside_a_number_or_a_list_is_refused_in_either_order(first, second):
    with pytest.raises(ValueError, match=r"'data.x.y' is inside 'data.x', which \w+ makes a (number|list)"):
        check_mapping_conflicts([first, second])


def test_the_mapping_operations_emit_profile_operations():
    assert MAPPING_OPERATIONS == {
        "equals": "set",
        "equals_if_not_exists": "set_if_missing",
        "append": "append",
        "increment": "increment",
        "add_tag": "add_tag",
    }


# RuleSet.compile and RuleSet.validate


def test_compile_orders_reshapers_by_priority_then_name_and_keeps_every_rule():
    compiled = rules(
        validators=[validator()],
        reshapers=[
            reshaper({}, name="b", priority=5),
            reshaper({}, name="a", priority=5),
            reshaper({}, name="c", priority=1),
        ],
        mappings=[mapping(("event@properties.total", "stats.spent", "increment"))],
    )
    assert [r.name for r in compiled.reshapers] == ["c", "a", "b"]
    assert len(compiled.validators) == 1 and len(compiled.mappings) == 1
    assert compiled.mappings[0].mappings == (
        {"event": "event@properties.total", "profile": "stats.spent", "operation": "increment"},
    )


def test_an_empty_rule_set_finds_nothing_wrong():
    assert RuleSet().validate(event(total="x"), source_id="s") == []


def test_validate_lists_every_failure_with_its_path_and_validator():
    compiled = rules(validators=[validator()])
    errors = compiled.validate(event(total="ten", currency=3), source_id="s")
    assert errors == [
        {"path": ".properties.currency", "message": "3 is not of type 'string' (validator Purchase)"},
        {"path": ".properties.total", "message": "'ten' is not of type 'number' (validator Purchase)"},
    ]
    assert compiled.validate(event(total=5), source_id="s") == []
    assert compiled.validate(event(), source_id="s") == [
        {"path": ".properties", "message": "'total' is a required property (validator Purchase)"}
    ]


def test_validate_paths_name_list_indexes_in_brackets():
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}}}
    errors = rules(validators=[validator(schema)]).validate(event(items=[1, "two"]), source_id="s")
    assert errors == [
        {"path": ".properties.items[1]", "message": "'two' is not of type 'integer' (validator Purchase)"}
    ]


def test_validate_applies_only_to_the_event_type_and_to_the_rule_source():
    compiled = rules(
        validators=[
            validator(name="Any source"),
            validator(name="Web only", source_id="web", schema={"required": ["x"]}),
        ]
    )
    assert compiled.validate(event("page-view", total="x"), source_id="web") == []
    from_app = compiled.validate(event(total=1), source_id="app")
    assert from_app == []
    from_web = compiled.validate(event(total=1), source_id="web")
    assert [e["message"] for e in from_web] == ["'x' is a required property (validator Web only)"]


def test_validate_targets_the_context_or_the_whole_event():
    compiled = rules(
        validators=[
            validator(
                {"required": ["page"], "properties": {"page": {"required": ["title"]}}}, name="C", target="context"
            ),
            validator({"required": ["session"]}, name="E", target="event"),
        ]
    )
    errors = compiled.validate(event(total=1), source_id="s")
    assert errors == [
        {"path": ".context.page", "message": "'title' is a required property (validator C)"},
        {"path": "", "message": "'session' is a required property (validator E)"},
    ]


def test_a_missing_or_null_target_is_validated_as_an_empty_object():
    compiled = rules(validators=[validator({"required": ["a"]}, target="context")])
    assert compiled.validate({"type": "purchase", "context": None}, source_id="s") == [
        {"path": ".context", "message": "'a' is a required property (validator Purchase)"}
    ]


def test_a_validator_that_cannot_run_is_an_error_of_the_event_not_an_exception():
    # Saved around the admin's checks: a $ref that does not resolve raises while validating.
    compiled = rules(validators=[validator({"properties": {"total": {"$ref": "#/$defs/none"}}})])
    (error,) = compiled.validate(event(total=1), source_id="s")
    assert error["path"] == ".properties"
    assert error["message"].startswith("validator Purchase cannot run: ")


# LazySources


def test_lazy_sources_load_a_root_once_and_only_when_read():
    calls: list[str] = []

    def load_profile():
        calls.append("profile")
        return {"traits": {"name": "Ann"}}

    lazy = LazySources({"profile": load_profile, "session": lambda: calls.append("session")}, payload={"a": 1})
    assert calls == []
    assert lazy.get("payload") == {"a": 1}
    assert lazy.get("profile") == {"traits": {"name": "Ann"}}
    assert lazy.get("profile") == {"traits": {"name": "Ann"}}
    assert calls == ["profile"]
    assert lazy.get("session") is None  # loaded (None), and not loaded again
    assert lazy.get("session", "default") is None
    assert calls == ["profile", "session"]
    assert lazy.get("unknown", "default") == "default"


def test_a_value_set_before_reading_is_not_replaced_by_the_loader():
    lazy = LazySources({"profile": lambda: pytest.fail("loaded")}, profile={"id": "p"})
    assert lazy.get("profile") == {"id": "p"}


# preprocess_event


def test_without_rules_an_event_is_valid_and_unchanged():
    original = event(total=5)
    outcome = preprocess_event(original, rules=RuleSet(), source_id="s", sources=sources())
    assert outcome.valid and outcome.errors == [] and outcome.operations == [] and outcome.messages == []
    assert outcome.event == original
    assert outcome.event is not original


def test_an_invalid_event_is_neither_reshaped_nor_mapped():
    compiled = rules(
        validators=[validator()],
        reshapers=[reshaper({"renamed": "event@properties.total"})],
        mappings=[mapping(("event@properties.total", "stats.spent", "increment"))],
    )
    original = event(total="x")
    outcome = preprocess_event(original, rules=compiled, source_id="s", sources=sources())
    assert not outcome.valid
    assert outcome.errors == [
        {"path": ".properties.total", "message": "'x' is not of type 'number' (validator Purchase)"}
    ]
    assert outcome.event is original and outcome.operations == []


def test_errors_given_by_the_caller_are_used_instead_of_validating_again():
    compiled = rules(validators=[validator()])
    given = [{"path": ".x", "message": "found earlier"}]
    assert (
        preprocess_event(event(total=1), rules=compiled, source_id="s", sources=sources(), errors=given).errors == given
    )
    # [] means "validated, valid": the failing validator is not run again.
    assert preprocess_event(event(total="x"), rules=compiled, source_id="s", sources=sources(), errors=[]).valid


def test_the_first_reshaper_by_priority_replaces_the_properties():
    compiled = rules(
        reshapers=[
            reshaper({"second": True}, name="later", priority=10),
            reshaper({"amount": "event@properties.total", "url": "payload@context.url", "fixed": 1}, priority=1),
        ]
    )
    original = event(total=5, extra="dropped")
    outcome = preprocess_event(
        original, rules=compiled, source_id="s", sources=sources(payload={"context": {"url": "/p"}})
    )
    assert outcome.event["properties"] == {"amount": 5, "url": "/p", "fixed": 1}
    assert original["properties"] == {"total": 5, "extra": "dropped"}  # the input is left as it was


def test_a_reshaper_of_another_type_or_source_does_not_apply():
    compiled = rules(
        reshapers=[reshaper({"x": 1}, event_type="view", priority=1), reshaper({"y": 2}, source_id="other", priority=2)]
    )
    outcome = preprocess_event(event(total=5), rules=compiled, source_id="s", sources=sources())
    assert outcome.event["properties"] == {"total": 5}


def test_keep_original_merges_the_template_without_erasing_with_missing_paths():
    compiled = rules(
        reshapers=[
            reshaper(
                {"total": "event@properties.missing", "nested": {"a": "event@properties.total", "b": None}, "new": 1},
                keep=True,
            )
        ]
    )
    original = event(total=5, nested={"b": "kept", "c": 3})
    outcome = preprocess_event(original, rules=compiled, source_id="s", sources=sources())
    assert outcome.event["properties"] == {"total": 5, "nested": {"a": 5, "b": "kept", "c": 3}, "new": 1}
    assert original["properties"]["nested"] == {"b": "kept", "c": 3}


def test_a_reshaper_merges_into_the_context_and_renders_the_session_context():
    compiled = rules(
        reshapers=[
            reshaper(
                {"t": "event@properties.total"},
                context={"page": {"title": "event@properties.title", "gone": "event@properties.nope"}},
                session_context={"browser": "session@context.browser", "none": "profile@traits.x", "k": "v"},
            )
        ]
    )
    lazy = LazySources({"session": lambda: {"context": {"browser": "firefox"}}, "profile": lambda: None})
    original = event(total=5, title="Cart")
    outcome = preprocess_event(original, rules=compiled, source_id="s", sources=lazy)
    assert outcome.event["context"] == {"page": {"url": "/a", "title": "Cart"}}
    assert original["context"] == {"page": {"url": "/a"}}
    assert outcome.session_context == {"browser": "firefox", "k": "v"}


def test_mappings_read_the_reshaped_event_and_emit_operations_with_the_event_id():
    compiled = rules(
        reshapers=[reshaper({"amount": "event@properties.total", "mail": "event@properties.email"})],
        mappings=[
            mapping(
                ("event@properties.amount", "stats.spent", "increment"),
                ("event@properties.mail", "traits.email", "equals"),
                ("event@properties.mail", "traits.first_email", "equals_if_not_exists"),
                ("event@properties.mail", "data.emails", "append"),
                ("event@type", "segments", "add_tag"),
            )
        ],
    )
    outcome = preprocess_event(event(total=5, email="a@x", id="ev-7"), rules=compiled, source_id="s", sources=sources())
    assert outcome.operations == [
        ProfileOperation("increment", "stats.spent", 5, event="ev-7"),
        ProfileOperation("set", "traits.email", "a@x", event="ev-7"),
        ProfileOperation("set_if_missing", "traits.first_email", "a@x", event="ev-7"),
        ProfileOperation("append", "data.emails", "a@x", event="ev-7"),
        ProfileOperation("add_tag", "segments", "purchase", event="ev-7"),
    ]


def test_every_matching_mapping_applies_in_order_and_conditions_choose():
    compiled = rules(
        mappings=[
            mapping(("event@properties.total", "stats.a", "increment"), name="all"),
            mapping(
                ("event@properties.total", "stats.big", "increment"),
                name="big",
                condition={"path": "event@properties.total", "op": "gte", "value": 100},
            ),
            mapping(
                ("event@properties.total", "stats.gold", "increment"),
                name="gold",
                condition={"path": "profile@traits.tier", "op": "equals", "value": "gold"},
            ),
            mapping(("event@properties.total", "stats.other", "increment"), name="view", event_type="view"),
            mapping(("event@properties.total", "stats.app", "increment"), name="app", source_id="app"),
        ]
    )
    lazy = LazySources({"profile": lambda: {"traits": {"tier": "gold"}}})
    small = preprocess_event(event(total=5), rules=compiled, source_id="web", sources=lazy)
    assert [op.path for op in small.operations] == ["stats.a", "stats.gold"]
    big = preprocess_event(event(total=150), rules=compiled, source_id="app", sources=sources())
    assert [op.path for op in big.operations] == ["stats.a", "stats.big", "stats.app"]


def test_the_profile_is_not_loaded_when_no_rule_reads_it():
    compiled = rules(mappings=[mapping(("event@properties.total", "stats.a", "increment"))])
    lazy = LazySources({"profile": lambda: pytest.fail("the profile was loaded")})
    assert preprocess_event(event(total=1), rules=compiled, source_id="s", sources=lazy).operations


def test_a_missing_value_maps_nothing_and_a_falsy_one_maps():
    compiled = rules(
        mappings=[
            mapping(
                ("event@properties.missing", "traits.a", "equals"),
                ("event@properties.zero", "stats.z", "increment"),
                ("event@properties.empty", "traits.e", "equals"),
                ("event@properties.no", "traits.no", "equals"),
            )
        ]
    )
    outcome = preprocess_event(event(zero=0, empty="", no=False), rules=compiled, source_id="s", sources=sources())
    assert [(op.path, op.value) for op in outcome.operations] == [
        ("stats.z", 0),
        ("traits.e", ""),
        ("traits.no", False),
    ]


@pytest.mark.parametrize("value", ["5", True, [1], {"n": 1}])
def test_incrementing_by_a_non_number_is_a_message_not_an_operation(value):
    compiled = rules(
        mappings=[
            mapping(
                ("event@properties.qty", "stats.items", "increment"),
                ("event@properties.qty", "data.raw", "equals"),
                name="Cart",
            )
        ]
    )
    outcome = preprocess_event(event(qty=value), rules=compiled, source_id="s", sources=sources())
    assert outcome.valid
    assert outcome.messages == [f"Cart: event@properties.qty is {value!r}, not a number to increment by"]
    assert outcome.operations == [ProfileOperation("set", "data.raw", value, event="e1")]


def test_an_event_without_an_id_gives_operations_without_one():
    compiled = rules(mappings=[mapping(("event@properties.total", "stats.a", "increment"))])
    outcome = preprocess_event(event(total=1, id=None), rules=compiled, source_id="s", sources=sources())
    assert outcome.operations == [ProfileOperation("increment", "stats.a", 1)]


def test_after_preprocessing_the_sources_hold_the_reshaped_event():
    compiled = rules(reshapers=[reshaper({"b": "event@properties.a"})])
    lazy = sources()
    outcome = preprocess_event(event(a=1), rules=compiled, source_id="s", sources=lazy)
    assert lazy["event"] is outcome.event
    assert lazy["event"]["properties"] == {"b": 1}


# preview


def test_preview_runs_each_event_of_a_payload_without_storing_anything():
    compiled = rules(
        validators=[validator()],
        reshapers=[reshaper({"total": "event@properties.total", "browser": "session@context.browser"})],
        mappings=[
            mapping(("event@properties.total", "stats.spent", "increment")),
            mapping(("event@properties.x", "traits.x", "equals"), event_type="view"),
        ],
    )
    payload = {
        "context": {"browser": "firefox"},
        "events": [event(total=5, id="a"), event(total="x", id="b"), {**event("view", x=1), "id": None}],
    }
    first, second, third = preview(payload=payload, source_id="s", rules=compiled)
    assert first == {
        "type": "purchase",
        "valid": True,
        "errors": [],
        "messages": [],
        "event": {
            "type": "purchase",
            "properties": {"total": 5, "browser": "firefox"},
            "context": {"page": {"url": "/a"}},
        },
        "operations": [{"op": "increment", "path": "stats.spent", "value": 5, "event": "a"}],
        "session_context": {},
    }
    assert not second["valid"] and second["operations"] == []
    assert second["errors"][0]["path"] == ".properties.total"
    assert third["operations"] == [{"op": "set", "path": "traits.x", "value": 1}]


def test_preview_has_no_profile_and_a_session_from_the_payload_context():
    compiled = rules(
        mappings=[
            mapping(("profile@traits.name", "traits.copy", "equals")),
            mapping(("session@context.lang", "traits.lang", "equals")),
        ]
    )
    (result,) = preview(payload={"context": {"lang": "pl"}, "events": [event()]}, source_id="s", rules=compiled)
    assert result["operations"] == [{"op": "set", "path": "traits.lang", "value": "pl", "event": "e1"}]
