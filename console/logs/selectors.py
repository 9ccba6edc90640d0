"""What the log page reads: the lines matching its filters, newest last, and the drops."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet, Sum
from django.db.models.functions import Lower

from console.models import LogDrops, LogLine

# The first load shows the last lines; each poll brings at most this many newer ones.
INITIAL_LINES = 200
MAX_LINES_PER_POLL = 500


@dataclass(frozen=True)
class LogFilters:
    worker_type: str = ""
    pid: int | None = None
    min_level: int | None = None
    text: str = ""
    since: datetime | None = None
    until: datetime | None = None


def filtered_lines(filters: LogFilters) -> QuerySet[LogLine]:
    lines = LogLine.objects.all()
    if filters.worker_type:
        lines = lines.filter(worker_type=filters.worker_type)
    if filters.pid is not None:
        lines = lines.filter(pid=filters.pid)
    if filters.min_level is not None:
        lines = lines.filter(level__gte=filters.min_level)
    if filters.text:
        # Lower() on both sides: MySQL's binary collation makes icontains case-sensitive.
        lines = lines.annotate(lmessage=Lower("message")).filter(lmessage__contains=filters.text.lower())
    if filters.since is not None:
        lines = lines.filter(time__gte=filters.since)
    if filters.until is not None:
        lines = lines.filter(time__lte=filters.until)
    return lines


def tail(filters: LogFilters, *, after: int | None) -> list[dict[str, Any]]:
    """Lines in id order (the order they were stored in). Without `after`: the last
    INITIAL_LINES; with it: up to MAX_LINES_PER_POLL lines stored after that id."""
    lines = filtered_lines(filters)
    if after is None:
        rows = list(lines.order_by("-id")[:INITIAL_LINES])[::-1]
    else:
        rows = list(lines.filter(id__gt=after).order_by("id")[:MAX_LINES_PER_POLL])
    return [
        {
            "id": line.id,
            "time": line.time.isoformat(),
            "level": logging.getLevelName(line.level),
            "logger": line.logger,
            "worker_type": line.worker_type,
            "host": line.host,
            "pid": line.pid,
            "message": line.message,
        }
        for line in rows
    ]


def dropped_count(filters: LogFilters) -> int:
    """Records the matching processes could not ship (within the retention period)."""
    drops = LogDrops.objects.all()
    if filters.worker_type:
        drops = drops.filter(worker_type=filters.worker_type)
    if filters.pid is not None:
        drops = drops.filter(pid=filters.pid)
    return drops.aggregate(total=Sum("dropped"))["total"] or 0
