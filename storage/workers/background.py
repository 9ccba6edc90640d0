"""The background worker: consumes system/functions and bulk-saves profiles, sessions, events.

A message is acknowledged only when every document it carries was saved; the ones
whose documents failed are negatively acknowledged and, after MAX_REDELIVERIES,
dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from django.conf import settings

from queueing import faults
from queueing.broker import OutgoingMessage, ReceivedMessage
from queueing.topics import FUNCTIONS
from queueing.worker import Worker, invoked
from storage.documents import FailedOperation
from storage.jobs import InvalidJob, StorageJob
from storage.selectors import tombstoned
from storage.store import SaveResult, Store, StoreUnavailable, get_store

logger = logging.getLogger("storage.workers")


def _timed_save(label: str, save: Callable[[], SaveResult]) -> SaveResult:
    started = time.perf_counter()
    result = save()
    logger.info(
        "%s: Saved %d, Errors=%d, ErrorIds=%s, Time=%s, Context=%s/%s",
        label,
        result.saved,
        len(result.errors),
        list(result.errors),
        round(time.perf_counter() - started, 4),  # the reference's Time=0.0305
        settings.TENANT,
        settings.PRODUCTION,
    )
    return result


def _note_failed_operations(failed: Sequence[FailedOperation], events: Sequence[dict]) -> None:
    """Logs each profile operation that could not be applied and notes it on its event
    (`metadata.failed_operations`): the rest of the job was applied, and nothing is
    dead-lettered for it, since a retry would fail the same way."""
    by_event: dict[str, list[str]] = {}
    for failure in failed:
        logger.warning(
            "Profile %s: operation %s of event %s was not applied: %s",
            failure.profile_id, failure.operation, failure.event_id, failure.reason,
        )  # fmt: skip
        if failure.event_id:
            by_event.setdefault(failure.event_id, []).append(f"{failure.operation}: {failure.reason}")
    for event in events:
        if event["id"] in by_event:
            metadata = event.setdefault("metadata", {})
            metadata["failed_operations"] = metadata.get("failed_operations", []) + by_event[event["id"]]


def _profiles_of(job: StorageJob) -> set[str]:
    ids = {job.profile.profile_id} if job.profile else set()
    if job.session and job.session.profile_id:
        ids.add(job.session.profile_id)
    return ids | {(e.get("profile") or {}).get("id") for e in job.events} - {None}


def _without_deleted(job: StorageJob, deleted: set[str]) -> StorageJob:
    """The job minus what belongs to a deleted profile (GDPR): queued before the deletion,
    it must not bring the profile back. Logged, and the message counts as handled."""
    profile = job.profile if job.profile and job.profile.profile_id not in deleted else None
    session = job.session if job.session and job.session.profile_id not in deleted else None
    events = [e for e in job.events if (e.get("profile") or {}).get("id") not in deleted]
    logger.warning(
        "Job %s: dropped what belongs to deleted profile(s) %s: profile changes=%s, session=%s, events=%d",
        job.job_id, sorted(_profiles_of(job) & deleted), profile is None and job.profile is not None,
        session is None and job.session is not None, len(job.events) - len(events),
    )  # fmt: skip
    return replace(job, profile=profile, session=session, events=events)


@dataclass
class Stored:
    failures: dict[int | str, str] = field(default_factory=dict)  # message id -> why it was not stored
    events: list[dict] = field(default_factory=list)  # the events of the messages stored
    # Profile id -> (before, after) of the batch, for the profiles it changed.
    profiles: dict[str, tuple[dict | None, dict]] = field(default_factory=dict)


# What happens next to what was stored: apps register a function here in their
# AppConfig.ready() (the workflows app: the events its triggers match), so storage does not
# depend on them. Each returns the messages to publish.
AFTER_STORE: list[Callable[[Stored], list[OutgoingMessage]]] = []


@invoked
def store_bulk_jobs(store: Store, messages: Sequence[ReceivedMessage]) -> Stored:
    failures: dict[int | str, str] = {}
    jobs: list[tuple[ReceivedMessage, StorageJob]] = []
    for message in messages:
        try:
            jobs.append((message, StorageJob.from_payload(message.payload)))
        except InvalidJob as exc:
            failures[message.id] = str(exc)
    if not jobs:
        return Stored(failures)
    # One query for the whole batch; most batches have no deleted profile.
    batch_profiles = set().union(*(_profiles_of(j) for _, j in jobs))
    deleted = tombstoned(batch_profiles)
    if deleted:
        jobs = [(m, _without_deleted(j, deleted) if _profiles_of(j) & deleted else j) for m, j in jobs]
    profiles = _timed_save("Profiles", lambda: store.apply_profile_changes([j.profile for _, j in jobs if j.profile]))
    _note_failed_operations(profiles.failed_operations, [e for _, j in jobs for e in j.events])
    faults.pause_at("after_profiles_saved")
    sessions = _timed_save("Sessions", lambda: store.save_sessions([j.session for _, j in jobs if j.session]))
    events = _timed_save("Events", lambda: store.save_events([e for _, j in jobs for e in j.events]))
    for message, job in jobs:
        errors = []
        if job.profile and job.profile.profile_id in profiles.errors:
            errors.append(f"profile {job.profile.profile_id}: {profiles.errors[job.profile.profile_id]}")
        if job.session and job.session.id in sessions.errors:
            errors.append(f"session {job.session.id}: {sessions.errors[job.session.id]}")
        errors += [f"event {e['id']}: {events.errors[e['id']]}" for e in job.events if e["id"] in events.errors]
        if errors:
            failures[message.id] = "; ".join(errors)
    # A profile deleted while this batch was being written: the deletion may have run before
    # these writes landed, so delete again what it would have deleted. (The check before
    # writing makes this rare; one more query per batch makes it safe.)
    late = tombstoned(batch_profiles - deleted)
    for profile_id in sorted(late):
        logger.warning("Profile %s was deleted while this batch was stored; deleting what it wrote", profile_id)
        store.delete_profile(profile_id)
    events = [
        e
        for message, job in jobs
        if message.id not in failures
        for e in job.events
        if (e.get("profile") or {}).get("id") not in late
    ]
    changed = {k: v for k, v in profiles.changed.items() if k not in late}
    return Stored(failures, events, changed)


class BackgroundWorker(Worker):
    worker_type = "background"
    topic = FUNCTIONS
    transient_errors = (*Worker.transient_errors, StoreUnavailable)

    def __init__(self, *, store: Store | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.store = store or get_store()

    def handle(self, messages: Sequence[ReceivedMessage]) -> dict[int | str, str]:
        stored = store_bulk_jobs(self.store, messages)
        # Published before the batch is acknowledged: if this fails, the batch is stored again
        # (a no-op) and published again; a run happens once per event and trigger anyway.
        self.broker.publish([m for hook in AFTER_STORE for m in hook(stored)])
        return stored.failures
