"""How a delivery's task reaches django-q2 at the right time.

django-q2 has no "run this task at time T" for one-off tasks: `schedule(..., next_run=T)`
creates a Schedule row, and the cluster's guard loop runs the scheduler only every 30
seconds (cluster.py: `counter >= 30`, whatever guard_cycle is), so a retry due in 10 s
would wait up to 40 s. Sleeping inside a task would hold a worker for the whole backoff.

What the ORM broker does offer: a queued task (an OrmQ row) is handed out only once its
`lock` time has passed (brokers/orm.py dequeue: `lock__lt=now`); enqueue sets it to now,
and it is how the broker hides a task being worked on. So a retry is queued with its
`lock` set to the delivery's next_attempt_at (DelayedOrm below): it is in the database at
once, survives restarts, and is picked up within `poll` (0.5 s) of its time. That is the
simplest reliable delay the broker has; it relies on the ORM broker, which the settings
use. With another broker a retry is left to the sweep.

The sweep (requeue_lost, a django-q2 Schedule every minute created after `migrate`)
catches what a crash lost: pending deliveries well past their time, whose task vanished,
and deliveries left "sending" by a task that was killed. Queuing a delivery twice is
harmless: deliver() claims the row with a conditional UPDATE, so only one task sends.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.tasks import async_task

from workflows.models import Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

DELIVER_TASK = "workflows.outbox.delivery.deliver"
SWEEP_TASK = "workflows.outbox.scheduling.requeue_lost"
SWEEP_SCHEDULE_NAME = "outbox: re-queue lost deliveries"
SWEEP_BATCH = 1000


class DelayedOrm(ORM):
    """The ORM broker, enqueuing a task that stays invisible until `not_before`."""

    def __init__(self, *, not_before: datetime, list_key: str | None = None) -> None:
        super().__init__(list_key=list_key or Conf.CLUSTER_NAME)
        self.not_before = not_before

    def enqueue(self, task: str) -> int:
        package = self.get_connection().create(key=self.list_key, payload=task, lock=self.not_before)
        return package.pk


def queue_delivery(delivery_id: int, at: datetime | None = None) -> None:
    """Hands the delivery to django-q2 now, or to run at `at`."""
    options = {"task_name": f"outbox-delivery-{delivery_id}-{timezone.now().timestamp():.3f}", "group": "outbox"}
    if at is None or at <= timezone.now():
        async_task(DELIVER_TASK, delivery_id, q_options=options)
    elif Conf.ORM:
        async_task(DELIVER_TASK, delivery_id, q_options={**options, "broker": DelayedOrm(not_before=at)})
    else:
        logger.info("Delivery %d: retry at %s left to the sweep (the broker cannot delay tasks)", delivery_id, at)


def queue_after_commit(delivery_id: int, at: datetime | None = None) -> None:
    """Queues the delivery once the current transaction commits: a worker must never see a
    task for a row it cannot read yet, nor a task for a row that was rolled back."""
    transaction.on_commit(lambda: queue_delivery(delivery_id, at))


def requeue_lost() -> int:
    """The every-minute sweep (see the module docstring). Returns how many it queued."""
    now = timezone.now()
    lost_after = timedelta(seconds=settings.OUTBOX_LOST_AFTER_SECONDS)
    # A task is killed after Q_CLUSTER["timeout"]: a row "sending" longer was cut off.
    cut_off = now - timedelta(seconds=settings.Q_CLUSTER["timeout"]) - lost_after
    interrupted = list(
        Delivery.objects.filter(status=DeliveryStatus.SENDING, updated_at__lt=cut_off).values_list("pk", flat=True)[
            :SWEEP_BATCH
        ]
    )
    if interrupted:
        Delivery.objects.filter(pk__in=interrupted, status=DeliveryStatus.SENDING, updated_at__lt=cut_off).update(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            last_error="The attempt was cut off (its task stopped while sending); trying again.",
            updated_at=now,
        )
    lost = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lt=now - lost_after).values_list(
            "pk", flat=True
        )[:SWEEP_BATCH]
    )
    # Moved to now, so a cluster with a long backlog gets this delivery queued once a
    # minute at most, not at every sweep until it is sent.
    Delivery.objects.filter(pk__in=lost, status=DeliveryStatus.PENDING).update(next_attempt_at=now, updated_at=now)
    queued = interrupted + lost
    for delivery_id in queued:
        queue_delivery(delivery_id)
    if queued:
        logger.warning("Outbox sweep: queued %d lost or interrupted deliveries again", len(queued))
    return len(queued)


def ensure_sweep_schedule(using: str = "default") -> Schedule:
    """Creates or repairs the every-minute sweep; run after every `migrate`."""
    schedule, _ = Schedule.objects.using(using).update_or_create(
        name=SWEEP_SCHEDULE_NAME,
        defaults={"func": SWEEP_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )
    return schedule
