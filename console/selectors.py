"""What the console shows: backlog of every topic and the live worker processes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from queueing.broker import Broker
from queueing.models import WorkerHeartbeat
from queueing.services import topic_backlog
from queueing.topics import ALL_TOPICS, NAMESPACE

WORKER_SILENT_AFTER = timedelta(seconds=15)


def queue_status(*, broker: Broker) -> dict[str, Any]:
    now = timezone.now()
    workers = WorkerHeartbeat.objects.filter(stopped=False, last_seen__gte=now - timedelta(hours=1))
    return {
        "topics": [
            {"namespace": NAMESPACE, "topic": name, **topic_backlog(broker=broker, topic=topic)}
            for name, topic in ALL_TOPICS.items()
        ],
        "workers": [
            {
                "type": w.worker_type,
                "host": w.host,
                "pid": w.pid,
                "started": w.started_at.isoformat(),
                "last_seen": w.last_seen.isoformat(),
                "processed": w.processed,
                "alive": now - w.last_seen < WORKER_SILENT_AFTER,
            }
            for w in workers.order_by("worker_type", "started_at")
        ],
    }
