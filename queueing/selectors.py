"""Reads of the queues shared by the backlog API and the console (a selector: it writes nothing)."""

from __future__ import annotations

from typing import Any

from queueing.broker import Broker
from queueing.topics import Topic


def topic_backlog(*, broker: Broker, topic: Topic) -> dict[str, Any]:
    """The reference page's shape: {"total": n, "backlog": [{partition, subscription, count}]}."""
    entries = broker.backlog(topic=topic)
    return {
        "total": sum(e.count for e in entries),
        "backlog": [{"partition": e.partition, "subscription": e.subscription, "count": e.count} for e in entries],
    }
