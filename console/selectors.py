"""What the console shows: backlog of every topic and the live worker processes."""

from __future__ import annotations

from typing import Any

from queueing.broker import Broker
from queueing.health import WorkerState, listed_workers
from queueing.services import topic_backlog
from queueing.topics import ALL_TOPICS, NAMESPACE


def queue_status(*, broker: Broker) -> dict[str, Any]:
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
                "state": health.state.value,  # running, silent or hung (see queueing/health.py)
                "alive": health.state is WorkerState.RUNNING,
            }
            for w, health in listed_workers()
        ],
    }
