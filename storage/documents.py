"""Profile and session documents, and applying profile operations to them.

Pure functions over dicts, shared by every store backend, so each backend applies
operations exactly the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import orjson

from storage.jobs import ProfileChange, ProfileOperation, SessionChange

# A profile remembers this many of the storage jobs it applied, to skip redelivered ones.
# A redelivery repeats at most one batch, and a batch holds at most this many messages
# (WorkerSettings caps max_batch_size), so no redelivered job falls out of the window.
APPLIED_JOBS_KEPT = 1000


def new_profile(profile_id: str, *, now: str) -> dict[str, Any]:
    return {
        "id": profile_id,
        "metadata": {"time": {"create": now, "update": now, "visit": {"last": None, "current": None, "count": 0}}},
        "ids": [],
        "stats": {"events": 0},
        "traits": {},
        "data": {},
        "segments": [],
        "interests": {},
        "consents": {},
        "aux": {},
        "misc": {},
        "tags": [],
    }


def deep_merge(target: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _parent(doc: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise ValueError(f"bad profile path {path!r}")
    node = doc
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"profile path {path!r} goes through {part!r}, which is not an object")
        node = child
    return node, parts[-1]


def _get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def apply_operation(doc: dict[str, Any], operation: ProfileOperation) -> None:
    node, leaf = _parent(doc, operation.path)
    op, value = operation.op, operation.value
    if op == "set":
        node[leaf] = copy.deepcopy(value)
    elif op == "set_if_missing":
        if node.get(leaf) is None:
            node[leaf] = copy.deepcopy(value)
    elif op in ("append", "add_tag"):
        current = node.get(leaf)
        if current is None:
            current = node[leaf] = []
        if not isinstance(current, list):
            raise ValueError(f"cannot {op} to {operation.path!r}: it is not a list")
        for item in value if isinstance(value, list) else [value]:
            if item not in current:
                current.append(copy.deepcopy(item))
    elif op == "increment":
        current = node.get(leaf) or 0
        if isinstance(value, bool) or not isinstance(value, int | float) or isinstance(current, bool):
            raise ValueError(f"cannot increment {operation.path!r} by {value!r}")
        if not isinstance(current, int | float):
            raise ValueError(f"cannot increment {operation.path!r}: it holds {current!r}")
        node[leaf] = current + value
    elif op == "copy":  # value: the profile path to copy from
        node[leaf] = copy.deepcopy(_get(doc, value)) if isinstance(value, str) else None
    elif op == "merge":
        current = node.get(leaf)
        if current is None:
            current = node[leaf] = {}
        if not isinstance(current, dict) or not isinstance(value, dict):
            raise ValueError(f"cannot merge into {operation.path!r}: both sides must be objects")
        deep_merge(current, value)
    else:
        raise ValueError(f"unknown profile operation {op!r}")


def apply_operations(doc: dict[str, Any], operations: list[ProfileOperation], *, now: str) -> dict[str, Any]:
    for operation in operations:
        apply_operation(doc, operation)
    doc.setdefault("metadata", {}).setdefault("time", {})["update"] = now
    return doc


def group_by_profile(changes: Sequence[ProfileChange]) -> dict[str, list[ProfileChange]]:
    """Changes per profile, each profile's in message order."""
    grouped: dict[str, list[ProfileChange]] = {}
    for change in changes:
        grouped.setdefault(change.profile_id, []).append(change)
    return grouped


def apply_changes(
    doc: dict[str, Any], applied: list[str], changes: list[ProfileChange], *, now: str
) -> tuple[dict[str, Any], list[str], str | None]:
    """Applies, in order, the changes whose job is not in `applied` (a redelivery is skipped).
    Each job is applied to a copy, so one whose operations fail leaves no half-applied
    change. Returns the document, the applied job ids (bounded) and the last error."""
    applied = list(applied)
    error = None
    for change in changes:
        if change.job_id in applied:
            continue
        try:
            doc = apply_operations(orjson.loads(orjson.dumps(doc)), change.operations, now=now)
        except ValueError as exc:
            error = str(exc)
            continue
        applied.append(change.job_id)
    return doc, applied[-APPLIED_JOBS_KEPT:], error


def merge_session(existing: dict[str, Any] | None, change: SessionChange) -> dict[str, Any]:
    doc = existing or {
        "id": change.id,
        "metadata": {"time": {"insert": change.time, "update": change.time}},
        "context": {},
        "properties": {},
    }
    doc["profile"] = {"id": change.profile_id} if change.profile_id else None
    doc["source"] = {"id": change.source_id}
    deep_merge(doc.setdefault("context", {}), change.context)
    deep_merge(doc.setdefault("properties", {}), change.properties)
    doc["metadata"]["time"]["update"] = max(doc["metadata"]["time"].get("update") or "", change.time)
    return doc
