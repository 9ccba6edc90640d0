"""Pre-processing rules applied to every event, in the one processing path the API and the
collector worker share: validation -> reshaping -> event-to-profile mapping.

Rules are read from the database at most every SOURCE_CACHE_SECONDS (2 s) per process and
compiled once per read (JSON Schemas included).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from storage.jobs import ProfileOperation
from tracardi_site.jsonutil import deep_merge
from tracking.rules.conditions import matches
from tracking.rules.paths import check_profile_path, check_reference, render, resolve

# Mapping operations and the profile operations they emit (docs/architecture.md, section 3).
MAPPING_OPERATIONS = {
    "equals": "set",
    "equals_if_not_exists": "set_if_missing",
    "append": "append",
    "increment": "increment",
    "add_tag": "add_tag",
}


def check_schema(schema: Any) -> None:
    if not isinstance(schema, dict):
        raise ValueError("A JSON Schema must be a JSON object.")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"Invalid JSON Schema: {exc.message}") from None
    resolver = Registry().with_resource("urn:rule", DRAFT202012.create_resource(schema)).resolver(base_uri="urn:rule")
    for ref in _refs(schema):
        if not ref.startswith("#"):
            raise ValueError(f"Invalid JSON Schema: $ref {ref!r} points outside the schema; only #/... refs are read")
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise ValueError(f"Invalid JSON Schema: $ref {ref!r} does not resolve inside the schema") from None


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def check_mappings(mappings: Any) -> None:
    if not isinstance(mappings, list) or not mappings:
        raise ValueError('Expected a non-empty list of {"event": ..., "profile": ..., "operation": ...}.')
    for index, mapping in enumerate(mappings):
        where = f"mapping {index + 1}"
        if not isinstance(mapping, dict) or set(mapping) != {"event", "profile", "operation"}:
            raise ValueError(f'{where}: expected exactly the keys "event", "profile" and "operation"')
        if mapping["operation"] not in MAPPING_OPERATIONS:
            raise ValueError(
                f"{where}: operation {mapping['operation']!r} is not one of {', '.join(MAPPING_OPERATIONS)}"
            )
        try:
            check_reference(mapping["event"])
            check_profile_path(mapping["profile"], list_operation=mapping["operation"] in ("append", "add_tag"))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


# What an operation leaves at its profile path; `equals` may leave anything.
OPERATION_KINDS = {"increment": "a number", "append": "a list", "add_tag": "a list"}


def check_mapping_conflicts(mappings: list[dict[str, str]], others: list[dict[str, str]] | None = None) -> None:
    """Refuses mappings whose operations cannot all apply to one profile: one path used as
    a number and as a list, or a path below one that holds a number or a list. (An
    `equals` may set any value: what it conflicts with is only known when it runs, and is
    then reported on the event.) `others`: the mappings of the other enabled rules for the
    same events."""
    entries = [(m["profile"], m["operation"]) for m in [*mappings, *(others or [])]]
    for index, (path, operation) in enumerate(entries):
        kind = OPERATION_KINDS.get(operation)
        for other_path, other_operation in entries[index + 1 :]:
            other_kind = OPERATION_KINDS.get(other_operation)
            if path == other_path and kind and other_kind and kind != other_kind:
                raise ValueError(
                    f"{path!r} cannot be {kind} ({operation}) and {other_kind} ({other_operation}) at once"
                )
            for outer, outer_op, outer_kind, inner in (
                (path, operation, kind, other_path),
                (other_path, other_operation, other_kind, path),
            ):
                if outer_kind and inner.startswith(outer + "."):
                    raise ValueError(f"{inner!r} is inside {outer!r}, which {outer_op} makes {outer_kind}")


@dataclass(frozen=True)
class CompiledValidator:
    name: str
    event_type: str
    source_id: str | None
    target: str
    validator: Draft202012Validator


@dataclass(frozen=True)
class CompiledReshaper:
    name: str
    event_type: str
    source_id: str | None
    properties: dict[str, Any]
    keep_original: bool
    context: dict[str, Any] | None
    session_context: dict[str, Any] | None


@dataclass(frozen=True)
class CompiledMapping:
    name: str
    event_type: str
    source_id: str | None
    condition: dict[str, Any] | None
    mappings: tuple[dict[str, str], ...]


def _applies(rule: Any, event_type: str, source_id: str) -> bool:
    return rule.event_type == event_type and rule.source_id in (None, source_id)


@dataclass(frozen=True)
class RuleSet:
    validators: tuple[CompiledValidator, ...] = ()
    reshapers: tuple[CompiledReshaper, ...] = ()  # in priority order
    mappings: tuple[CompiledMapping, ...] = ()

    @classmethod
    def compile(cls, *, validators: Iterable, reshapers: Iterable, mappings: Iterable) -> RuleSet:
        """From rule model instances (enabled or not: the caller chooses)."""
        return cls(
            validators=tuple(
                CompiledValidator(v.name, v.event_type, v.source_id, v.target, Draft202012Validator(v.schema))
                for v in validators
            ),
            reshapers=tuple(
                CompiledReshaper(
                    r.name,
                    r.event_type,
                    r.source_id,
                    r.properties_template,
                    r.keep_original_properties,
                    r.context_template,
                    r.session_context_template,
                )
                for r in sorted(reshapers, key=lambda r: (r.priority, r.name))
            ),
            mappings=tuple(
                CompiledMapping(m.name, m.event_type, m.source_id, m.condition, tuple(m.mappings)) for m in mappings
            ),
        )

    def validate(self, event: dict[str, Any], *, source_id: str) -> list[dict[str, str]]:
        """Every failure of the validators of this event's type: [{"path": ".properties.total",
        "message": "'x' is not of type 'number' (validator Purchase)"}]."""
        errors = []
        for rule in self.validators:
            if not _applies(rule, event["type"], source_id):
                continue
            instance = event if rule.target == "event" else event.get(rule.target) or {}
            prefix = "" if rule.target == "event" else f".{rule.target}"
            try:
                found = sorted(rule.validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
            except Exception as exc:  # a schema saved around the admin's checks must not break /track
                errors.append({"path": prefix, "message": f"validator {rule.name} cannot run: {exc}"})
                continue
            for error in found:
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
                errors.append({"path": prefix + where, "message": f"{error.message} (validator {rule.name})"})
        return errors


class LazySources(dict):
    """The data references read: `event`, `payload`, and `session`/`profile` loaded only when
    a rule reads them (a store read the API skips otherwise)."""

    def __init__(self, loaders: dict[str, Callable[[], Any]], **values: Any) -> None:
        super().__init__(**values)
        self._loaders = loaders

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self and key in self._loaders:
            self[key] = self._loaders[key]()
        return super().get(key, default)


def _without_nulls(value: dict[str, Any]) -> dict[str, Any]:
    """What a template found: merging a missing path's null would erase a stored value."""
    return {k: _without_nulls(v) if isinstance(v, dict) else v for k, v in value.items() if v is not None}


@dataclass
class EventOutcome:
    event: dict[str, Any]
    valid: bool
    errors: list[dict[str, str]] = field(default_factory=list)  # validation failures
    messages: list[str] = field(default_factory=list)  # mapping problems
    operations: list[ProfileOperation] = field(default_factory=list)
    session_context: dict[str, Any] = field(default_factory=dict)


def preprocess_event(
    event: dict[str, Any],
    *,
    rules: RuleSet,
    source_id: str,
    sources: LazySources,
    errors: list[dict[str, str]] | None = None,
) -> EventOutcome:
    """Validation (unless `errors` says how it went) -> reshaping (first matching rule) ->
    mapping (every matching rule)."""
    if errors is None:
        errors = rules.validate(event, source_id=source_id)
    if errors:  # stored, marked invalid, but neither reshaped nor mapped
        return EventOutcome(event=event, valid=False, errors=errors)
    outcome = EventOutcome(event=dict(event), valid=True)
    sources["event"] = event
    reshaper = next((r for r in rules.reshapers if _applies(r, event["type"], source_id)), None)
    if reshaper is not None:
        properties = render(reshaper.properties, sources)
        if reshaper.keep_original:  # a missing path does not erase the original value
            properties = deep_merge(copy.deepcopy(event["properties"]), _without_nulls(properties))
        outcome.event["properties"] = properties
        if reshaper.context:
            context = _without_nulls(render(reshaper.context, sources))
            outcome.event["context"] = deep_merge(copy.deepcopy(event["context"]), context)
        if reshaper.session_context:
            outcome.session_context = _without_nulls(render(reshaper.session_context, sources))
    sources["event"] = outcome.event
    for mapping in rules.mappings:
        if not _applies(mapping, event["type"], source_id) or not matches(mapping.condition, sources):
            continue
        for entry in mapping.mappings:
            value = resolve(entry["event"], sources)
            if value is None:
                continue  # nothing to map from this event
            operation = MAPPING_OPERATIONS[entry["operation"]]
            if operation == "increment" and (isinstance(value, bool) or not isinstance(value, int | float)):
                outcome.messages.append(f"{mapping.name}: {entry['event']} is {value!r}, not a number to increment by")
                continue
            outcome.operations.append(ProfileOperation(operation, entry["profile"], value, event=event.get("id")))
    return outcome


def preview(*, payload: dict[str, Any], source_id: str, rules: RuleSet) -> list[dict[str, Any]]:
    """Runs a sample payload through the rules without storing or reading anything: per event,
    the validation errors, the event after reshaping and the profile operations."""
    sources = LazySources(
        {"session": lambda: {"context": payload.get("context") or {}}, "profile": lambda: None}, payload=payload
    )
    results = []
    for event in payload["events"]:
        outcome = preprocess_event(event, rules=rules, source_id=source_id, sources=sources)
        results.append(
            {
                "type": event["type"],
                "valid": outcome.valid,
                "errors": outcome.errors,
                "messages": outcome.messages,
                "event": {k: outcome.event.get(k) for k in ("type", "properties", "context")},
                "operations": [op.to_dict() for op in outcome.operations],
                "session_context": outcome.session_context,
            }
        )
    return results
