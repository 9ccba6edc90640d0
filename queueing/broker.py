"""The Broker interface (docs/architecture.md, sections 2 and 5).

The API and the workers only see this interface; the backend is chosen by
QUEUE_BACKEND and imported only when selected.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from queueing.topics import Topic


class BrokerUnavailable(Exception):
    """The broker did not confirm a publish; nothing of that publish may be claimed as accepted."""


@dataclass(frozen=True)
class OutgoingMessage:
    topic: Topic
    key: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class ReceivedMessage:
    id: int | str
    topic: Topic
    partition: int
    key: str
    payload: dict[str, Any]
    redelivery_count: int
    # When it was published, in seconds since the epoch by the publisher's (or the broker's)
    # clock; 0.0 when unknown. The worker's batch buffer counts a message's wait from here.
    published_at: float = 0.0


@dataclass(frozen=True)
class PartitionBacklog:
    partition: str
    subscription: str
    count: int


@dataclass(frozen=True)
class DeadLetter:
    """A message in a topic's dead-letter topic, as the console lists it."""

    id: str  # the broker's id of the dead letter: what replay and purge take
    topic: Topic  # the main topic it came from (and is replayed to)
    key: str
    payload: Any  # the decoded JSON; the raw text when the data is not JSON
    dead_lettered_at: datetime | None
    # None: the broker does not keep it (Pulsar keeps neither; see README-data.md).
    deliveries: int | None
    error: str | None
    origin: str = ""  # Pulsar: the partition and message id it was dead-lettered from


@dataclass(frozen=True)
class TopicFlow:
    """What goes in and out of one topic, as far as the broker can tell (None: it cannot).

    A broker gives cumulative counters (the console derives rates from two samples) or its
    own rates; `oldest_published_at` (epoch seconds) is the oldest unacknowledged message."""

    published: int | None = None
    acknowledged: int | None = None
    rate_in: float | None = None
    rate_out: float | None = None
    oldest_published_at: float | None = None
    oldest_known: bool = True


class Consumer(abc.ABC):
    """One consumer of one subscription; per key, messages arrive in order."""

    @abc.abstractmethod
    def receive(self, *, max_messages: int, timeout: float) -> list[ReceivedMessage]:
        """Returns as soon as messages are available, or an empty list after `timeout` seconds."""

    @abc.abstractmethod
    def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None: ...

    @abc.abstractmethod
    def negative_acknowledge(self, messages: Sequence[ReceivedMessage], *, error: str = "") -> None:
        """Redelivers after a delay; after MAX_REDELIVERIES the message goes to the dead-letter topic."""

    @abc.abstractmethod
    def redeliver_unacknowledged(self) -> None:
        """Forgets what is in flight after an error, so those messages are delivered again."""

    @abc.abstractmethod
    def close(self) -> None: ...


class Broker(abc.ABC):
    @abc.abstractmethod
    def setup(self) -> None:
        """Creates what the topics need (topics, dead-letter topics, subscriptions); idempotent."""

    @abc.abstractmethod
    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """All or nothing; returns only once the broker has confirmed. Raises BrokerUnavailable."""

    @abc.abstractmethod
    def subscribe(self, *, topic: Topic, consumer_name: str) -> Consumer: ...

    @abc.abstractmethod
    def backlog(self, *, topic: Topic) -> list[PartitionBacklog]:
        """Unacknowledged messages per partition and subscription, every partition listed."""

    @abc.abstractmethod
    def dead_letters(self, topic: Topic, *, limit: int = 50, offset: int = 0, search: str = "") -> list[DeadLetter]:
        """The dead letters of `topic` (a main topic), newest first; `search` matches the
        key or the error, case-insensitively."""

    @abc.abstractmethod
    def replay_dead_letters(self, topic: Topic, ids: Sequence[str] | None = None) -> int:
        """Publishes the given dead letters (None: all) to `topic` again with their key and
        payload, then removes them from the dead-letter topic; returns how many. A crash in
        between replays a message twice, which storage absorbs (idempotent by job and event id)."""

    @abc.abstractmethod
    def purge_dead_letters(self, topic: Topic, ids: Sequence[str] | None = None) -> int:
        """Removes the given dead letters (None: all) for good; returns how many."""

    @abc.abstractmethod
    def flow(self, *, topic: Topic) -> TopicFlow:
        """Counters or rates of published and acknowledged messages, and the oldest waiting one."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flushes and releases connections."""


@functools.cache
def get_broker() -> Broker:
    if settings.QUEUE_BACKEND == "database":
        from queueing.backends.database import DatabaseBroker

        return DatabaseBroker()
    if settings.QUEUE_BACKEND == "pulsar":
        from queueing.backends.pulsar import PulsarBroker

        return PulsarBroker()
    raise RuntimeError(f"QUEUE_BACKEND={settings.QUEUE_BACKEND!r} has no implementation")
