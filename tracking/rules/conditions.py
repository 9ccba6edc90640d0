"""Conditions on an event's fields, as JSON (no eval):

    {"path": "event@properties.price", "op": "gte", "value": 100}
    {"all": [cond, ...]}   {"any": [cond, ...]}   {"not": cond}

ops: equals, not_equals, exists, in, gt, gte, lt, lte.
"""

from __future__ import annotations

from typing import Any

from tracking.rules.paths import ROOTS, check_reference, resolve

COMPARISONS = {"gt", "gte", "lt", "lte"}
OPS = {"equals", "not_equals", "exists", "in"} | COMPARISONS


def check_condition(condition: Any, where: str = "condition", *, roots: tuple[str, ...] = ROOTS) -> None:
    """Raises ValueError naming the first thing wrong with a condition. `roots`: the references
    allowed (workflows add memory@)."""
    if not isinstance(condition, dict):
        raise ValueError(f"{where}: expected an object")
    forms = [key for key in ("all", "any", "not", "path") if key in condition]
    if len(forms) != 1:
        raise ValueError(f"{where}: use exactly one of all, any, not, or path/op/value")
    allowed = {"path", "op", "value"} if forms == ["path"] else set(forms)
    if set(condition) - allowed:
        raise ValueError(f"{where}: unexpected keys {', '.join(sorted(set(condition) - allowed))}")
    if "all" in condition or "any" in condition:
        key = "all" if "all" in condition else "any"
        if not isinstance(condition[key], list) or not condition[key]:
            raise ValueError(f"{where}.{key}: expected a non-empty list of conditions")
        for index, child in enumerate(condition[key]):
            check_condition(child, f"{where}.{key}[{index}]", roots=roots)
        return
    if "not" in condition:
        check_condition(condition["not"], f"{where}.not", roots=roots)
        return
    try:
        check_reference(condition.get("path"), roots=roots)
    except ValueError as exc:
        raise ValueError(f"{where}.path: {exc}") from None
    op = condition.get("op")
    if op not in OPS:
        raise ValueError(f"{where}.op: {op!r} is not one of {', '.join(sorted(OPS))}")
    if op == "in" and not isinstance(condition.get("value"), list):
        raise ValueError(f"{where}.value: 'in' needs a list")
    if op in COMPARISONS and (
        isinstance(condition.get("value"), bool) or not isinstance(condition.get("value"), int | float)
    ):
        raise ValueError(f"{where}.value: {op!r} needs a number")


def matches(condition: dict[str, Any] | None, sources: dict[str, Any]) -> bool:
    if not condition:
        return True
    if "all" in condition:
        return all(matches(c, sources) for c in condition["all"])
    if "any" in condition:
        return any(matches(c, sources) for c in condition["any"])
    if "not" in condition:
        return not matches(condition["not"], sources)
    value, op, expected = resolve(condition["path"], sources), condition["op"], condition.get("value")
    if op == "exists":
        return value is not None
    if op == "equals":
        return value == expected
    if op == "not_equals":
        return value != expected
    if op == "in":
        return value in expected
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return {"gt": value > expected, "gte": value >= expected, "lt": value < expected, "lte": value <= expected}[op]
