"""Writing, counting and pruning the shipped log lines."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

from console.models import MAX_MESSAGE_CHARS, LogDrops, LogLine

logger = logging.getLogger(__name__)

PRUNE_TASK = "console.logs.services.prune_logs"
PRUNE_SCHEDULE_NAME = "console: prune worker logs"
PRUNE_EVERY_MINUTES = 5
# Rows deleted per statement: on SQLite a delete holds the one write lock the pipeline
# needs, so a large prune is done in short steps.
PRUNE_CHUNK = 5000


def write_lines(records: Sequence[logging.LogRecord], *, worker_type: str, host: str, using: str = "default") -> None:
    """One batch in one transaction. `records` come from QueueHandler.prepare: `msg` is the
    formatted line."""
    lines = [
        LogLine(
            time=datetime.fromtimestamp(record.created, tz=UTC),
            level=record.levelno,
            logger=record.name[:200],
            message=str(record.msg)[:MAX_MESSAGE_CHARS],
            worker_type=worker_type,
            host=host[:255],
            pid=record.process or 0,
        )
        for record in records
    ]
    with transaction.atomic(using=using):
        LogLine.objects.using(using).bulk_create(lines)


def save_drops(
    *, worker_type: str, host: str, pid: int, started_at: datetime, dropped: int, using: str = "default"
) -> None:
    """Records the process's drop count so far (a total: saving it twice is harmless)."""
    with transaction.atomic(using=using):
        LogDrops.objects.using(using).update_or_create(
            host=host[:255],
            pid=pid,
            started_at=started_at,
            defaults={"worker_type": worker_type, "dropped": dropped, "updated_at": timezone.now()},
        )


def prune_logs() -> int:
    """The django-q2 schedule's task: keeps lines younger than LOG_RETENTION_DAYS and at most
    the newest LOG_MAX_RECORDS of them (between two runs the table can grow past it by what
    PRUNE_EVERY_MINUTES of logging adds). Returns how many lines it deleted."""
    cut_off = timezone.now() - timedelta(days=settings.LOG_RETENTION_DAYS)
    deleted = _delete_chunked(LogLine.objects.filter(time__lt=cut_off))
    keep = settings.LOG_MAX_RECORDS
    oldest_kept_id = next(iter(LogLine.objects.order_by("-id").values_list("id", flat=True)[keep - 1 : keep]), None)
    if oldest_kept_id is not None:
        deleted += _delete_chunked(LogLine.objects.filter(id__lt=oldest_kept_id))
    LogDrops.objects.filter(updated_at__lt=cut_off).delete()
    if deleted:
        logger.info("Pruned %d log line(s)", deleted)
    return deleted


def _delete_chunked(query: object) -> int:
    deleted = 0
    while True:
        ids = list(query.order_by("id").values_list("id", flat=True)[:PRUNE_CHUNK])
        if not ids:
            return deleted
        count, _ = LogLine.objects.filter(id__in=ids).delete()
        deleted += count


def ensure_prune_schedule(using: str = "default") -> Schedule:
    """Creates or repairs the prune schedule; run after every `migrate`."""
    schedule, _ = Schedule.objects.using(using).update_or_create(
        name=PRUNE_SCHEDULE_NAME,
        defaults={
            "func": PRUNE_TASK,
            "schedule_type": Schedule.MINUTES,
            "minutes": PRUNE_EVERY_MINUTES,
            "repeats": -1,
        },
    )
    return schedule
