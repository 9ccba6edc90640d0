"""The console's tables: the log lines shipped by the workers, the supervisor and the API."""

from __future__ import annotations

from django.db import models

# The formatted line is capped: MySQL's TEXT holds 64 KB, and 16,000 characters of utf8mb4
# (up to 4 bytes each) always fit. A longer line (a traceback quoting a whole payload) is
# cut rather than making the store refuse its whole batch.
MAX_MESSAGE_CHARS = 16_000


class LogLine(models.Model):
    """One log record, as the process wrote it to stdout (the `tracardi` format)."""

    time = models.DateTimeField()
    # logging's number (DEBUG 10 ... CRITICAL 50): "at least WARNING" is level >= 30.
    level = models.PositiveSmallIntegerField()
    logger = models.CharField(max_length=200)
    message = models.TextField()
    # collector, background, workflow, supervisor or api (see console/logs/handler.py).
    worker_type = models.CharField(max_length=20)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()

    class Meta:
        # The page's filters: process (the dashboard's link), level, time range. The tail
        # itself reads by id, the primary key.
        indexes = [
            models.Index(fields=["worker_type", "pid"], name="console_log_process"),
            models.Index(fields=["level"], name="console_log_level"),
            models.Index(fields=["time"], name="console_log_time"),
        ]

    def __str__(self) -> str:
        return self.message[:200]


class LogDrops(models.Model):
    """How many records one process could not ship (its buffer was full, or the log table
    could not be written), so the page can say that lines are missing."""

    worker_type = models.CharField(max_length=20)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    # With host and pid, tells a process from an earlier one that had the same pid.
    started_at = models.DateTimeField()
    dropped = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "pid", "started_at"], name="console_log_drops_process")]

    def __str__(self) -> str:
        return f"{self.worker_type} {self.host}:{self.pid}: {self.dropped} dropped"
