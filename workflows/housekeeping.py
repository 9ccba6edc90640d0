"""Housekeeping run by django-q2 every hour (the schedule is made by a migration): old
successful workflow runs, expired trigger-once claims, heartbeats of stopped workers."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from queueing.models import WorkerHeartbeat
from workflows.models import RunStatus, TriggerOnce, WorkflowRun

HEARTBEATS_KEPT = timedelta(days=1)


def clean_up() -> dict[str, int]:
    """Deletes successful runs older than WORKFLOW_RUNS_KEEP_DAYS (failed runs are kept),
    expired trigger-once claims, and heartbeats not seen for a day. Returns the counts."""
    now = timezone.now()
    runs, _ = WorkflowRun.objects.filter(
        status=RunStatus.OK, published=True, started_at__lt=now - timedelta(days=settings.WORKFLOW_RUNS_KEEP_DAYS)
    ).delete()
    claims, _ = TriggerOnce.objects.filter(expires_at__lt=now).delete()
    heartbeats, _ = WorkerHeartbeat.objects.filter(last_seen__lt=now - HEARTBEATS_KEPT).delete()
    return {"runs": runs, "claims": claims, "heartbeats": heartbeats}
