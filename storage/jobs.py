"""The storage job: what processing publishes to system/functions, one per profile.

Profile changes travel as ordered operations, not whole documents (docs/architecture.md,
sections 2 and 4), so two jobs of one profile never overwrite each other's changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracardi_site.contracts import SCHEMA_VERSION


class InvalidJob(ValueError):
    """A message that can never be stored as it is; it fails and ends in the dead-letter topic."""


@dataclass(frozen=True)
class ProfileOperation:
    op: str
    path: str
    value: Any = None
    # The stored id of the event that caused the operation: a profile applies the
    # operations of one event once, however many requests (client retries) carry it.
    event: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"op": self.op, "path": self.path, "value": self.value}
        if self.event is not None:
            data["event"] = self.event
        return data

    def describe(self) -> str:
        return f"{self.op} {self.path}"


@dataclass(frozen=True)
class ProfileChange:
    profile_id: str
    job_id: str
    operations: list[ProfileOperation]


@dataclass(frozen=True)
class SessionChange:
    id: str
    profile_id: str | None
    source_id: str
    time: str  # ISO time of the request that produced the change
    context: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StorageJob:
    job_id: str
    profile: ProfileChange | None
    session: SessionChange | None
    events: list[dict[str, Any]]

    def to_payload(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "kind": "storage",
            "job_id": self.job_id,
            "profile": None
            if self.profile is None
            else {"id": self.profile.profile_id, "ops": [op.to_dict() for op in self.profile.operations]},
            "session": None if self.session is None else self.session.__dict__,
            "events": self.events,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> StorageJob:
        if payload.get("v") != SCHEMA_VERSION or payload.get("kind") != "storage":
            raise InvalidJob(
                f"unsupported storage job (v={payload.get('v')!r}, kind={payload.get('kind')!r}); "
                f"this worker reads v={SCHEMA_VERSION}, kind='storage'"
            )
        try:
            job_id = payload["job_id"]
            profile = payload.get("profile")
            session = payload.get("session")
            return cls(
                job_id=job_id,
                profile=None
                if profile is None
                else ProfileChange(
                    profile_id=profile["id"],
                    job_id=job_id,
                    operations=[ProfileOperation(**op) for op in profile["ops"]],
                ),
                session=None if session is None else SessionChange(**session),
                events=list(payload.get("events") or []),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidJob(f"malformed storage job: {exc}") from exc
