"""Profile and session documents, and applying profile operations to them.

Pure functions over dicts, shared by every store backend, so each backend applies
operations exactly the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from storage.jobs import ProfileChange, ProfileOperation, SessionChange
from tracardi_site.jsonutil import deep_merge

# A profile remembers this many of the storage jobs it applied, to skip redelivered ones.
# A redelivery repeats at most one batch, and a batch holds at most this many messages
# (WorkerSettings caps max_batch_size), so no redelivered job falls out of the window.
APPLIED_JOBS_KEPT = 1000
# ... and this many of the events whose operations it applied, to skip a client's retry
# of a request (a new job carrying the same event ids): a retry is recognised while the
# event is among the profile's last APPLIED_EVENTS_KEPT events.
APPLIED_EVENTS_KEPT = 1000


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


def _parts(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise ValueError(f"bad profile path {path!r}")
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise ValueError(f"bad profile path {path!r}")
    return parts


def _existing_parent(doc: dict[str, Any], path: str, parts: list[str]) -> dict[str, Any] | None:
    """The object holding the leaf, or None when part of the way is missing. Creates nothing,
    so an operation that then fails leaves the document as it was."""
    node: dict[str, Any] | None = doc
    for part in parts[:-1]:
        child = node.get(part) if node is not None else None
        if child is None:
            return None
        if not isinstance(child, dict):
            raise ValueError(f"profile path {path!r} goes through {part!r}, which is not an object")
        node = child
    return node


def _make_parent(doc: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """Called only once an operation is known to succeed: creates the missing objects on the way
    (a None on the way counts as missing, as it always has)."""
    node = doc
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    return node


def _get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


_MISSING = object()
_DELETE = object()


def _as_items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _new_value(operation: ProfileOperation, current: Any, doc: dict[str, Any]) -> Any:
    """The leaf's value after the operation (_MISSING: leave it, _DELETE: remove it). Raises
    ValueError before anything is changed."""
    op, value, path = operation.op, operation.value, operation.path
    if op == "set":
        return copy.deepcopy(value)
    if op == "set_if_missing":
        return copy.deepcopy(value) if current is None else _MISSING
    if op in ("append", "add_tag"):
        if current is not None and not isinstance(current, list):
            raise ValueError(f"cannot {op} to {path!r}: it is not a list")
        result = list(current or [])
        for item in _as_items(value):
            if item not in result:
                result.append(copy.deepcopy(item))
        return result
    if op == "remove":  # value: an item or a list of items; a missing list stays missing
        if current is not None and not isinstance(current, list):
            raise ValueError(f"cannot remove from {path!r}: it is not a list")
        if current is None:
            return _MISSING
        unwanted = _as_items(value)
        return [item for item in current if item not in unwanted]
    if op == "increment":  # a negative value decrements
        current = current or 0
        if isinstance(value, bool) or not isinstance(value, int | float) or isinstance(current, bool):
            raise ValueError(f"cannot increment {path!r} by {value!r}")
        if not isinstance(current, int | float):
            raise ValueError(f"cannot increment {path!r}: it holds {current!r}")
        return current + value
    if op == "copy":  # value: the profile path to copy from
        return copy.deepcopy(_get(doc, value)) if isinstance(value, str) else None
    if op == "merge":
        if current is not None and not isinstance(current, dict):
            raise ValueError(f"cannot merge into {path!r}: both sides must be objects")
        if not isinstance(value, dict):
            raise ValueError(f"cannot merge into {path!r}: both sides must be objects")
        return deep_merge(copy.deepcopy(current or {}), value)
    if op == "delete":
        return _DELETE
    raise ValueError(f"unknown profile operation {op!r}")


def apply_operation(doc: dict[str, Any], operation: ProfileOperation) -> None:
    """Applies one operation in place. Raises ValueError for an operation that cannot apply,
    and then the document is unchanged: the new value is computed before anything is written."""
    parts = _parts(operation.path)
    parent = _existing_parent(doc, operation.path, parts)
    leaf = parts[-1]
    current = parent.get(leaf) if parent is not None else None
    try:
        result = _new_value(operation, current, doc)
    except (TypeError, KeyError, AttributeError) as exc:  # odd values: still the caller's ValueError
        raise ValueError(f"cannot {operation.op} {operation.path!r}: {exc}") from None
    if result is _MISSING:
        return
    if result is _DELETE:
        if parent is not None:
            parent.pop(leaf, None)
        return
    _make_parent(doc, parts)[leaf] = result


def group_by_profile(changes: Sequence[ProfileChange]) -> dict[str, list[ProfileChange]]:
    """Changes per profile, each profile's in message order."""
    grouped: dict[str, list[ProfileChange]] = {}
    for change in changes:
        grouped.setdefault(change.profile_id, []).append(change)
    return grouped


@dataclass(frozen=True)
class FailedOperation:
    """An operation that could not be applied; the rest of its job was."""

    profile_id: str
    event_id: str | None
    operation: str  # "increment traits.x"
    reason: str


@dataclass
class AppliedChanges:
    document: dict[str, Any]
    applied: Applied
    failed: list[FailedOperation] = field(default_factory=list)
    changed: bool = False


@dataclass(frozen=True)
class Applied:
    """What a profile remembers having applied: the last storage jobs (a redelivered
    message) and the last events (a client retrying a request under a new job)."""

    jobs: tuple[str, ...] = ()
    events: tuple[str, ...] = ()

    @classmethod
    def of(cls, jobs: Sequence[str] | None, events: Sequence[str] | None) -> Applied:
        return cls(tuple(jobs or ()), tuple(events or ()))


def _pending(applied: Applied, changes: Sequence[ProfileChange]) -> tuple[list[ProfileOperation], Applied]:
    """The operations still to apply, in order, and what will have been applied after them.
    A job seen before is skipped whole; an operation of an event applied by an earlier
    job (of an earlier batch, or earlier in this one) is skipped."""
    jobs, events = list(applied.jobs), list(applied.events)
    seen_jobs, seen_events = set(jobs), set(events)
    pending: list[ProfileOperation] = []
    for change in changes:
        if change.job_id in seen_jobs:
            continue
        fresh = [op for op in change.operations if op.event is None or op.event not in seen_events]
        pending += fresh
        jobs.append(change.job_id)
        seen_jobs.add(change.job_id)
        for event_id in dict.fromkeys(op.event for op in fresh if op.event is not None):
            events.append(event_id)
            seen_events.add(event_id)
    return pending, Applied(tuple(jobs[-APPLIED_JOBS_KEPT:]), tuple(events[-APPLIED_EVENTS_KEPT:]))


def apply_changes(
    doc: dict[str, Any], applied: Applied, changes: Sequence[ProfileChange], *, now: str
) -> AppliedChanges:
    """Applies, in order, the operations not applied before (see `_pending`). An operation
    that cannot be applied is left out and reported; every other operation of its job
    still applies. The document given is never modified."""
    pending, after = _pending(applied, changes)
    if not pending:
        return AppliedChanges(document=doc, applied=after, changed=after != applied)
    skipped: dict[int, str] = {}
    while True:  # replays from the original when an operation fails: no half-applied operation
        work = orjson.loads(orjson.dumps(doc))
        failed_at = None
        for index, operation in enumerate(pending):
            if index in skipped:
                continue
            try:
                apply_operation(work, operation)
            except (ValueError, TypeError) as exc:
                skipped[index], failed_at = str(exc), index
                break
        if failed_at is None:
            break
    work.setdefault("metadata", {}).setdefault("time", {})["update"] = now
    profile_id = str(doc.get("id"))
    failed = [
        FailedOperation(profile_id, pending[i].event, pending[i].describe(), reason) for i, reason in skipped.items()
    ]
    return AppliedChanges(document=work, applied=after, failed=failed, changed=True)


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
