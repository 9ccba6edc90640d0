"""Tables of the database broker, and the worker settings and heartbeats."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class QueueMessage(models.Model):
    """One message of one partition, for one subscription; acknowledging deletes the row."""

    id = models.BigAutoField(primary_key=True)
    topic = models.CharField(max_length=100)
    partition = models.PositiveSmallIntegerField()
    subscription = models.CharField(max_length=100)
    key = models.CharField(max_length=255)
    payload = models.TextField()
    deliveries = models.PositiveIntegerField(default=0)
    # Epoch seconds; a nacked message waits here, and blocks its partition to keep key order.
    available_at = models.FloatField(default=0.0)
    published_at = models.DateTimeField(auto_now_add=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["subscription", "topic", "partition", "id"], name="queue_msg_consume")]

    def __str__(self) -> str:
        return f"{self.topic}-partition-{self.partition} #{self.id}"


class QueueLease(models.Model):
    """Who consumes one partition of one subscription; a lease not renewed expires."""

    subscription = models.CharField(max_length=100)
    topic = models.CharField(max_length=100)
    partition = models.PositiveSmallIntegerField()
    owner = models.CharField(max_length=200, blank=True, default="")
    expires_at = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscription", "topic", "partition"], name="queue_lease_unique")
        ]


class QueueConsumer(models.Model):
    """A live consumer of a subscription; the partitions are shared evenly among live ones."""

    subscription = models.CharField(max_length=100)
    topic = models.CharField(max_length=100)
    owner = models.CharField(max_length=200)
    last_seen = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subscription", "topic", "owner"], name="queue_consumer_unique")]


class QueueCounter(models.Model):
    """Messages ever published to and acknowledged on one topic by the database broker. Rows
    are deleted on acknowledgement, so without these the console could not tell the in and
    out rates apart (Pulsar reports its own rates)."""

    topic = models.CharField(max_length=100, primary_key=True)
    published = models.PositiveBigIntegerField(default=0)
    acknowledged = models.PositiveBigIntegerField(default=0)


class BacklogSample(models.Model):
    """One topic's backlog at one moment, for the console's chart and rates (queueing/sampling.py).
    `slot` is the sampling period (epoch seconds // BACKLOG_SAMPLE_SECONDS): unique per
    topic, so processes sampling at the same time store one sample."""

    topic = models.CharField(max_length=100)
    slot = models.BigIntegerField()
    taken_at = models.FloatField()  # epoch seconds
    total = models.PositiveBigIntegerField()
    # Cumulative counters (database broker) or the broker's own rates (Pulsar); None: unknown.
    published = models.PositiveBigIntegerField(null=True)
    acknowledged = models.PositiveBigIntegerField(null=True)
    rate_in = models.FloatField(null=True)
    rate_out = models.FloatField(null=True)
    oldest_at = models.FloatField(null=True)  # publish time of the oldest waiting message
    oldest_known = models.BooleanField(default=True)  # False: the broker cannot tell

    class Meta:
        constraints = [models.UniqueConstraint(fields=["topic", "slot"], name="backlog_sample_unique")]
        indexes = [models.Index(fields=["slot"], name="backlog_sample_slot")]


class WorkerSample(models.Model):
    """Messages processed so far by all processes of one worker type (the sum of their
    heartbeats' `processed`), sampled with the backlog: the console's messages/s."""

    worker_type = models.CharField(max_length=20)
    slot = models.BigIntegerField()
    taken_at = models.FloatField()
    processed = models.PositiveBigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["worker_type", "slot"], name="worker_sample_unique")]
        indexes = [models.Index(fields=["slot"], name="worker_sample_slot")]


class WorkerType(models.TextChoices):
    COLLECTOR = "collector", "collector"
    BACKGROUND = "background", "background"
    WORKFLOW = "workflow", "workflow"


# Bounded so a redelivered batch stays within the window of jobs a profile remembers
# (storage.documents.APPLIED_JOBS_KEPT).
MAX_BATCH_SIZE = 1000

# The Helm chart's defaults: the collector is off until enabled.
DEFAULT_ENABLED = {WorkerType.COLLECTOR: False, WorkerType.BACKGROUND: True, WorkerType.WORKFLOW: True}


class LoggingLevel(models.TextChoices):
    DEBUG = "DEBUG", "DEBUG"
    INFO = "INFO", "INFO"
    WARNING = "WARNING", "WARNING"
    ERROR = "ERROR", "ERROR"


class WorkerSettings(models.Model):
    """The Helm chart's worker.<type> values, editable while the workers run."""

    worker_type = models.CharField(max_length=20, primary_key=True, choices=WorkerType.choices)
    enabled = models.BooleanField(
        default=False, help_text="worker.<type>.enabled: run_workers keeps processes of enabled types only."
    )
    replicas = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(0), MaxValueValidator(64)],
        help_text="worker.<type>.replicas: how many processes run_workers keeps running.",
    )
    logging_level = models.CharField(
        max_length=10,
        choices=LoggingLevel.choices,
        default=LoggingLevel.INFO,
        help_text="worker.<type>.config.loggingLevel: running workers pick it up within 5 seconds.",
    )
    min_batch_size = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_BATCH_SIZE)],
        help_text="bulker.minBatchSize: a batch is processed once it has this many messages...",
    )
    # 500: a background worker's batch of 1,000 10-event jobs peaked above 150 MiB on
    # Elasticsearch and drained no faster (bench/drain_ratio.py --batch).
    max_batch_size = models.PositiveIntegerField(
        default=500,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_BATCH_SIZE)],
        help_text="bulker.maxBatchSize: never more messages than this in one batch.",
    )
    # A quarter second: at low and half load a batch never fills, so an event that reaches an
    # idle stage waits this long there (counted from its publish: one that queued while the
    # worker was busy goes in the next batch at once); at full load batches fill
    # (min_batch_size) long before it.
    max_time_in_buffer = models.FloatField(
        default=0.25,
        validators=[MinValueValidator(0.0), MaxValueValidator(3600.0)],
        help_text="bulker.maxTimeInBuffer: ...or once its first message has waited this many seconds.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "worker settings"
        verbose_name_plural = "worker settings"

    def __str__(self) -> str:
        return f"worker.{self.worker_type}"

    def clean(self) -> None:
        if self.min_batch_size and self.max_batch_size and self.min_batch_size > self.max_batch_size:
            raise ValidationError({"min_batch_size": "The minimum batch size cannot exceed the maximum batch size."})


class WorkerHeartbeat(models.Model):
    """One row per worker process, updated every few seconds while it runs."""

    worker_type = models.CharField(max_length=20, choices=WorkerType.choices)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    processed = models.PositiveBigIntegerField(default=0)
    # When it last settled a batch; None: not yet.
    last_batch_at = models.DateTimeField(null=True, blank=True)
    stopped = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["worker_type", "last_seen"], name="worker_heartbeat_seen")]

    def __str__(self) -> str:
        return f"{self.worker_type} {self.host}:{self.pid}"
