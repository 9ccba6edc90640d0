"""Profile and session documents, and applying profile operations to them.

Pure functions over dicts, shared by every store backend, so each backend applies
operations exactly the same way.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Iterable, Sequence
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


# A remembered id is kept as a 72-bit digest in base64: the first 9 bytes of its 120-bit
# BLAKE2b digest, exactly 12 characters, so a window is one ASCII string of 12-character
# slots. A profile with both windows full holds two strings of 12,000 characters: about
# 24 KiB of JSON, against 40 KiB with the whole 120-bit digests stored until 2026-11-30 and
# 78 KiB with the ids themselves. Each batch reads and rewrites every profile it touches,
# so the windows were most of the bytes the background worker and Elasticsearch moved: a
# 500-message batch on Elasticsearch took 0.68 s with full windows, 0.40 s with empty ones.
# 72 bits are still far more than a window needs: a false "already applied" takes a new
# id whose digest equals one of the profile's last 1,000, odds about 2e-19 per id checked.
DIGEST_BYTES = 9
# The BLAKE2b digest size the stored digests are cut from. It must stay 15: the windows of
# 120-bit digests stored before convert to 72-bit ones only as its prefix.
FULL_DIGEST_BYTES = 15
SLOT = 12  # base64 characters per digest, no padding
# The packed form is stored as a list holding one string with this prefix, so a store reads
# every form from the same list field: a list of ids (written before the packed form), one
# string of 120-bit digests (OLD_PACKED_PREFIX) or one of 72-bit digests; the next write
# stores the last. No id the platform issues starts with either prefix.
PACKED_PREFIX = "blake2b-72:"
OLD_PACKED_PREFIX, OLD_SLOT = "blake2b-120:", 20


def _digest(value: str) -> str:
    digest = hashlib.blake2b(value.encode(), digest_size=FULL_DIGEST_BYTES).digest()[:DIGEST_BYTES]
    return base64.b64encode(digest).decode("ascii")


def _unpack(packed: str, slot: int) -> str:
    if len(packed) % slot:
        raise ValueError(f"a packed window of {len(packed)} characters is not whole {slot}-character slots")
    if slot == SLOT:
        return packed
    # A 120-bit digest's first 12 base64 characters are its first 9 bytes: the 72-bit digest.
    return "".join(packed[start : start + SLOT] for start in range(0, len(packed), slot))


@dataclass(frozen=True)
class Window:
    """The last ids a profile applied, oldest first, as SLOT-character digests in one string."""

    packed: str = ""

    @classmethod
    def read(cls, stored: Sequence[str] | None) -> Window:
        """From a stored list: one packed string (72-bit or 120-bit digests), or ids."""
        if not stored:
            return cls()
        if len(stored) == 1 and isinstance(stored[0], str):
            for prefix, slot in ((PACKED_PREFIX, SLOT), (OLD_PACKED_PREFIX, OLD_SLOT)):
                if stored[0].startswith(prefix):
                    return cls(_unpack(stored[0][len(prefix) :], slot))
        return cls("".join(_digest(str(value)) for value in stored))

    def stored(self) -> list[str]:
        """The JSON the stores write: [] when empty, else [PACKED_PREFIX + digests]."""
        return [PACKED_PREFIX + self.packed] if self.packed else []

    def has(self, digest: str) -> bool:
        """Whether this digest fills a slot. A match must start on a slot boundary: one across
        two slots is a coincidence of characters, not a remembered id."""
        found = self.packed.find(digest)
        while found != -1 and found % SLOT:
            found = self.packed.find(digest, found + 1)
        return found != -1

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.has(_digest(value))

    def __len__(self) -> int:
        return len(self.packed) // SLOT

    def extended(self, digests: Iterable[str], *, keep: int) -> Window:
        """The window with these digests appended, cut to the newest `keep`."""
        added = "".join(digests)
        if not added:
            return self
        return Window((self.packed + added)[-keep * SLOT :])


@dataclass(frozen=True)
class Applied:
    """What a profile remembers having applied: the last storage jobs (a redelivered
    message) and the last events (a client retrying a request under a new job)."""

    job_window: Window = Window()
    event_window: Window = Window()

    @classmethod
    def of(cls, jobs: Sequence[str] | None, events: Sequence[str] | None) -> Applied:
        """From the stored `applied_jobs` and `applied_events`, in either form (Window.read)."""
        return cls(Window.read(jobs), Window.read(events))

    @property
    def jobs(self) -> list[str]:
        """What a store writes as `applied_jobs` (a JSON list; Window.stored)."""
        return self.job_window.stored()

    @property
    def events(self) -> list[str]:
        """What a store writes as `applied_events`."""
        return self.event_window.stored()


def _pending(applied: Applied, changes: Sequence[ProfileChange]) -> tuple[list[ProfileOperation], Applied]:
    """The operations still to apply, in order, and what will have been applied after them.
    A job seen before is skipped whole; an operation of an event applied by an earlier
    job (of an earlier batch, or earlier in this one) is skipped."""
    jobs, events = applied.job_window, applied.event_window
    # The digests this batch adds, in order (dicts: ordered, and a cheap membership test for
    # the few ids of one batch; the remembered ones are searched in the packed strings).
    new_jobs: dict[str, None] = {}
    new_events: dict[str, None] = {}
    digests: dict[str, str] = {}

    def event_seen(event_id: str) -> bool:
        digest = digests.get(event_id) or digests.setdefault(event_id, _digest(event_id))
        return digest in new_events or events.has(digest)

    pending: list[ProfileOperation] = []
    for change in changes:
        job = _digest(change.job_id)
        if job in new_jobs or jobs.has(job):
            continue
        # Judged against the events applied before this job: one event's operations in one job all apply.
        fresh = [op for op in change.operations if op.event is None or not event_seen(op.event)]
        pending += fresh
        new_jobs[job] = None
        for event_id in dict.fromkeys(op.event for op in fresh if op.event is not None):
            new_events[digests[event_id]] = None
    after = Applied(
        jobs.extended(new_jobs, keep=APPLIED_JOBS_KEPT), events.extended(new_events, keep=APPLIED_EVENTS_KEPT)
    )
    return pending, after


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
