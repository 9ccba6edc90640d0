"""Tables of the database store: JSON documents with indexed columns."""

from __future__ import annotations

from django.db import models


class ProfileRecord(models.Model):
    id = models.CharField(max_length=255, primary_key=True)
    document = models.JSONField()
    # Ids of the storage jobs already applied (newest last, bounded): a redelivered job
    # is skipped, so its operations are applied exactly once.
    applied_jobs = models.JSONField(default=list)
    # Ids of the last events whose operations were applied: a client's retry is skipped.
    applied_events = models.JSONField(default=list)
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "storage_profile"


class SessionRecord(models.Model):
    id = models.CharField(max_length=255, primary_key=True)
    profile_id = models.CharField(max_length=255, null=True, db_index=True)
    source_id = models.CharField(max_length=100, db_index=True)
    document = models.JSONField()
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "storage_session"


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
