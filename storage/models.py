"""Tables of the database store: JSON documents with indexed columns."""

from __future__ import annotations

from django.db import models


class ProfileRecord(models.Model):
    id = models.CharField(max_length=255, primary_key=True)
    document = models.JSONField()
    # The storage jobs already applied (newest last, bounded): a redelivered job is
    # skipped, so its operations are applied exactly once. Stored as documents.Window
    # writes it (one packed string of digests; rows written before hold a list of ids).
    applied_jobs = models.JSONField(default=list)
    # The last events whose operations were applied, the same way: a client's retry is skipped.
    applied_events = models.JSONField(default=list)
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "storage_profile"
        # The console lists profiles newest first, keyset-paged on (created_at, id).
        indexes = [models.Index(fields=["created_at", "id"], name="storage_profile_browse")]


class SessionRecord(models.Model):
    id = models.CharField(max_length=255, primary_key=True)
    profile_id = models.CharField(max_length=255, null=True, db_index=True)
    source_id = models.CharField(max_length=100, db_index=True)
    document = models.JSONField()
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "storage_session"
        indexes = [models.Index(fields=["created_at", "id"], name="storage_session_browse")]


class EventRecord(models.Model):
    # The event id is the primary key: the first write wins, a redelivery or retry is a no-op.
    id = models.CharField(max_length=255, primary_key=True)
    type = models.CharField(max_length=255, db_index=True)
    profile_id = models.CharField(max_length=255, null=True, db_index=True)
    session_id = models.CharField(max_length=255, null=True, db_index=True)
    source_id = models.CharField(max_length=100, db_index=True)
    time = models.DateTimeField(db_index=True)
    document = models.JSONField()

    class Meta:
        db_table = "storage_event"
        indexes = [models.Index(fields=["time", "id"], name="storage_event_browse")]


class ProfileTombstone(models.Model):
    """A profile deleted for good (GDPR): the background worker drops what is still queued
    for it, so a message published before the deletion cannot bring it back."""

    profile_id = models.CharField(max_length=255, primary_key=True)
    deleted_at = models.DateTimeField()
    deleted_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        db_table = "storage_profile_tombstone"
        # The API's processes look up the latest deletion every few seconds (tracking/selectors.py).
        indexes = [models.Index(fields=["deleted_at"], name="storage_tombstone_deleted_at")]

    def __str__(self) -> str:
        return self.profile_id
