"""Topic names and subscriptions, as Pulsar spells them (docs/architecture.md, section 2)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from django.conf import settings

NAMESPACE = "system"
DLQ_SUFFIX = "-DLQ"


@dataclass(frozen=True)
class Topic:
    name: str  # short name inside the namespace, e.g. "functions" or "functions-DLQ"
    subscription: str

    @property
    def dead_letter(self) -> Topic:
        # Dead letters keep the subscription, so they stay retained and countable.
        return Topic(self.name + DLQ_SUFFIX, self.subscription)

    @property
    def url(self) -> str:
        return f"persistent://{settings.TENANT}/{NAMESPACE}/{self.name}"

    def partition_url(self, partition: int) -> str:
        return f"{self.url}-partition-{partition}"


COLLECTOR = Topic("collector", "tracardi-collector-subscription")
FUNCTIONS = Topic("functions", "tracardi-function-subscription")
WORKFLOW = Topic("workflow", "tracardi-workflow-subscription")
MAIN_TOPICS = (COLLECTOR, FUNCTIONS, WORKFLOW)
ALL_TOPICS = {t.name: t for t in MAIN_TOPICS} | {t.dead_letter.name: t.dead_letter for t in MAIN_TOPICS}


def find_topic(*, namespace: str, name: str) -> Topic | None:
    if namespace != NAMESPACE:
        return None
    return ALL_TOPICS.get(name)


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes and restarts (Python's hash() is salted per process)."""
    return zlib.crc32(key.encode("utf-8")) % partitions
