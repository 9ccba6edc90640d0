"""The `database` broker: a partitioned log in the Django database.

Per subscription, each partition is consumed by one leased consumer at a time and in
id order; partitions are shared evenly among the live consumers. Works beside other
processes on SQLite (WAL, IMMEDIATE transactions) and on MySQL (row locks).

The leases are hand-written because this broker exists to need no server: a queue library
would bring its own (Redis, RabbitMQ), and django-q2's ORM broker has no partitions or
per-key order. tests/queueing/test_database_broker.py and tests/contract hold the
guarantees (order per partition, takeover of an expired lease, a new consumer's share
within a second), and bench/api_ratio.py and bench/track_throughput.py measure it.
"""

from __future__ import annotations

import functools
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import orjson
from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from queueing.broker import (
    Broker,
    BrokerUnavailable,
    Consumer,
    DeadLetter,
    OutgoingMessage,
    PartitionBacklog,
    ReceivedMessage,
    TopicFlow,
)
from queueing.group_commit import GroupCommitter
from queueing.models import QueueConsumer, QueueCounter, QueueLease, QueueMessage
from queueing.topics import Topic, partition_for
from tracardi_site.sqlite.direct import direct_writer

IDLE_POLL_SECONDS = 0.05
# What a consumer reads of a message row.
RECEIVED_COLUMNS = ("id", "partition", "key", "payload", "deliveries", "available_at", "published_at")
REBALANCE_CHECK_SECONDS = 1.0
# Publishes outside a transaction share one commit with the other threads' (group_commit.py).
_committer = GroupCommitter(lambda rows: commit_messages(rows))


class NewMessage(NamedTuple):
    topic: str
    partition: int
    subscription: str
    key: str
    payload: str
    deliveries: int = 0
    error: str = ""


def count_messages(topic: str, *, published: int = 0, acknowledged: int = 0) -> None:
    """Adds to the topic's counters; call inside the transaction that writes the messages,
    so the counters never disagree with the rows. A prepared UPDATE: it runs on every
    publish, where the ORM's compiling of an F() update cost more than the statement."""
    if not (published or acknowledged):
        return
    conn = transaction.get_connection()
    with conn.cursor() as cursor:
        cursor.execute(_counter_sql(conn.vendor), [published, acknowledged, topic])
        if cursor.rowcount:
            return
    # The topic's first message: one more statement, once.
    QueueCounter.objects.bulk_create([QueueCounter(topic=topic)], ignore_conflicts=True)
    QueueCounter.objects.filter(topic=topic).update(
        published=F("published") + published, acknowledged=F("acknowledged") + acknowledged
    )


@functools.cache
def _counter_sql(vendor: str) -> str:
    table = connections["default"].ops.quote_name(QueueCounter._meta.db_table)
    return f"UPDATE {table} SET published = published + %s, acknowledged = acknowledged + %s WHERE topic = %s"


@functools.cache
def _insert_sql(placeholder: str) -> str:
    quote = connections["default"].ops.quote_name
    columns = [*NewMessage._fields, "available_at", "published_at"]
    placeholders = ", ".join([placeholder] * len(columns))
    return (
        f"INSERT INTO {quote(QueueMessage._meta.db_table)} ({', '.join(map(quote, columns))}) VALUES ({placeholders})"
    )


@functools.cache
def _count_published_sqlite() -> str:
    table = connections["default"].ops.quote_name(QueueCounter._meta.db_table)
    return (
        f"INSERT INTO {table} (topic, published, acknowledged) VALUES (?, ?, 0) "
        "ON CONFLICT (topic) DO UPDATE SET published = published + excluded.published"
    )


def _message_params(rows: Sequence[NewMessage]) -> list[tuple]:
    published_at = connections["default"].ops.adapt_datetimefield_value(timezone.now())
    return [(*row, 0.0, published_at) for row in rows]


def write_messages(rows: Sequence[NewMessage]) -> None:
    """Inserts messages and counts them, in the caller's transaction. One executemany of a
    prepared INSERT: this is every /track request's write, where bulk_create's building of
    model instances and SQL cost more than the insert itself (bench/api_ratio.py)."""
    conn = transaction.get_connection()
    with conn.cursor() as cursor:
        cursor.executemany(_insert_sql("%s"), _message_params(rows))
    for topic, n in Counter(row.topic for row in rows).items():
        count_messages(topic, published=n)


def commit_messages(rows: Sequence[NewMessage]) -> None:
    """`write_messages` in a transaction of its own: on a SQLite file, on the engine's plain
    sqlite3 connection (tracardi_site/sqlite/direct.py; bench/publish_cost.py compares it with
    Django's transaction), otherwise through Django."""
    writer = direct_writer(connections["default"])
    if writer is None:
        try:
            with transaction.atomic():
                write_messages(rows)
        except DatabaseError:
            if connection.connection is not None and not connection.is_usable():
                connection.close()  # a broken connection: the next use opens a new one
            raise
        return
    params = _message_params(rows)
    with writer.transaction() as cursor:
        cursor.executemany(_insert_sql("?"), params)
        cursor.executemany(_count_published_sqlite(), list(Counter(row.topic for row in rows).items()))


class DatabaseBroker(Broker):
    def __init__(self, *, partitions: int | None = None) -> None:
        self.partitions = partitions or settings.QUEUE_PARTITIONS

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:  # no write transaction (on SQLite, no write lock) for nothing
            return
        rows = [
            NewMessage(
                m.topic.name, partition_for(m.key, self.partitions), m.topic.subscription, m.key,
                orjson.dumps(m.payload).decode(),
            )
            for m in messages
        ]  # fmt: skip
        try:
            if transaction.get_connection().in_atomic_block:
                # Part of the caller's transaction (a new session's registration): it commits.
                write_messages(rows)
            else:
                _committer.commit(rows)
        except DatabaseError as exc:
            raise BrokerUnavailable(f"database broker did not accept the publish: {exc}") from exc

    def setup(self) -> None:
        """Nothing to create: the tables come with the migrations."""

    def close(self) -> None:
        """Nothing to flush: a publish is committed before it returns."""

    def subscribe(self, *, topic: Topic, consumer_name: str) -> DatabaseConsumer:
        return DatabaseConsumer(topic=topic, consumer_name=consumer_name, partitions=self.partitions)

    def backlog(self, *, topic: Topic) -> list[PartitionBacklog]:
        counts = {
            (row["partition"], row["subscription"]): row["count"]
            for row in QueueMessage.objects.filter(topic=topic.name)
            .values("partition", "subscription")
            .annotate(count=Count("id"))
        }
        keys = {(p, topic.subscription) for p in range(self.partitions)} | set(counts)
        return [
            PartitionBacklog(partition=topic.partition_url(p), subscription=s, count=counts.get((p, s), 0))
            for p, s in sorted(keys)
        ]

    def flow(self, *, topic: Topic) -> TopicFlow:
        counter = QueueCounter.objects.filter(topic=topic.name).first()
        # Ids grow with time: the lowest id left is the oldest message not acknowledged.
        oldest = QueueMessage.objects.filter(topic=topic.name).order_by("id").values_list("published_at", flat=True)
        oldest_at = oldest.first()
        return TopicFlow(
            published=counter.published if counter else 0,
            acknowledged=counter.acknowledged if counter else 0,
            oldest_published_at=oldest_at.timestamp() if oldest_at else None,
        )

    # --- dead letters -------------------------------------------------------------------

    def _dead_rows(self, topic: Topic, ids: Sequence[str] | None):
        rows = QueueMessage.objects.filter(topic=topic.dead_letter.name, subscription=topic.dead_letter.subscription)
        if ids is not None:
            rows = rows.filter(id__in=[int(i) for i in ids if str(i).isdigit()])
        return rows

    def dead_letters(self, topic: Topic, *, limit: int = 50, offset: int = 0, search: str = "") -> list[DeadLetter]:
        rows = self._dead_rows(topic, None)
        if search:
            # Lower() on both sides: MySQL's binary collation (ids that differ in case stay
            # distinct) makes LIKE, and so icontains, case-sensitive.
            needle = search.lower()
            rows = rows.annotate(lkey=Lower("key"), lerror=Lower("error")).filter(
                Q(lkey__contains=needle) | Q(lerror__contains=needle)
            )
        return [
            DeadLetter(
                id=str(row.id),
                topic=topic,
                key=row.key,
                payload=_decoded(row.payload),
                dead_lettered_at=row.published_at,
                deliveries=row.deliveries,
                error=row.error,
            )
            for row in rows.order_by("-id")[offset : offset + limit]
        ]

    def replay_dead_letters(self, topic: Topic, ids: Sequence[str] | None = None) -> int:
        # One transaction: the message is back in its topic or still dead, never both or neither.
        with transaction.atomic():
            rows = list(self._dead_rows(topic, ids).select_for_update().order_by("id"))
            QueueMessage.objects.bulk_create(
                [
                    QueueMessage(
                        topic=topic.name,
                        partition=partition_for(r.key, self.partitions),
                        subscription=topic.subscription,
                        key=r.key,
                        payload=r.payload,
                    )
                    for r in rows
                ]
            )
            QueueMessage.objects.filter(id__in=[r.id for r in rows]).delete()
            count_messages(topic.name, published=len(rows))
        return len(rows)

    def purge_dead_letters(self, topic: Topic, ids: Sequence[str] | None = None) -> int:
        with transaction.atomic():
            deleted, _ = self._dead_rows(topic, ids).delete()
        return deleted


def _decoded(payload: str) -> object:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload


class DatabaseConsumer(Consumer):
    def __init__(self, *, topic: Topic, consumer_name: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = partitions
        self.owner = f"{consumer_name}:{uuid.uuid4().hex[:12]}"
        self.lease_seconds = settings.QUEUE_LEASE_SECONDS
        self.held: list[int] = []
        self._turn = 0
        self._next_maintenance = 0.0
        self._next_check = 0.0
        self._live = 0
        # Delivered and not yet (n)acked, per partition: the next fetch continues after them.
        self._inflight: dict[int, set[int]] = {}
        self._scope = Q(subscription=topic.subscription, topic=topic.name)
        QueueLease.objects.bulk_create(
            [QueueLease(subscription=topic.subscription, topic=topic.name, partition=p) for p in range(partitions)],
            ignore_conflicts=True,
        )

    # --- leases -----------------------------------------------------------------------

    def _consumers_changed(self, now: float) -> bool:
        """Whether the number of live consumers changed since the last rebalance: checked
        every REBALANCE_CHECK_SECONDS (one read), so a new consumer gets its share of the
        partitions within about a second, not at the next lease renewal."""
        if now < self._next_check:
            return False
        self._next_check = now + REBALANCE_CHECK_SECONDS
        live = QueueConsumer.objects.filter(self._scope, last_seen__gte=now - self.lease_seconds).count()
        return live != self._live

    def _maintain_leases(self) -> None:
        now = time.time()
        if now < self._next_maintenance and not self._consumers_changed(now):
            return
        self._next_maintenance = now + self.lease_seconds / 3
        expires = now + self.lease_seconds
        with transaction.atomic():
            QueueConsumer.objects.update_or_create(
                subscription=self.topic.subscription, topic=self.topic.name, owner=self.owner,
                defaults={"last_seen": now},
            )  # fmt: skip
            consumers = QueueConsumer.objects.filter(self._scope)
            consumers.filter(last_seen__lt=now - 10 * self.lease_seconds).delete()
            live = consumers.filter(last_seen__gte=now - self.lease_seconds).count()
            self._live = live
            target = math.ceil(self.partitions / max(live, 1))
            leases = QueueLease.objects.filter(self._scope)
            leases.filter(owner=self.owner).update(expires_at=expires)
            held = sorted(leases.filter(owner=self.owner).values_list("partition", flat=True))
            busy = {p for p, ids in self._inflight.items() if ids}
            # Give back partitions beyond our fair share, never one with messages in flight.
            for partition in reversed(held):
                if len(held) <= target:
                    break
                if partition not in busy:
                    leases.filter(partition=partition, owner=self.owner).update(owner="", expires_at=0.0)
                    held.remove(partition)
            if len(held) < target:
                free = leases.filter(expires_at__lt=now).exclude(owner=self.owner).values_list("partition", flat=True)
                for partition in sorted(free):
                    if len(held) >= target:
                        break
                    taken = leases.filter(Q(expires_at__lt=now) | Q(owner=self.owner), partition=partition).update(
                        owner=self.owner, expires_at=expires
                    )
                    if taken:
                        held.append(partition)
        self.held = sorted(held)
        if len(held) < target:  # the others give theirs back at their next check: look again soon
            self._next_maintenance = min(self._next_maintenance, now + REBALANCE_CHECK_SECONDS)

    # --- consuming --------------------------------------------------------------------

    def receive(self, *, max_messages: int, timeout: float) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        while True:
            self._maintain_leases()
            messages = self._fetch(max_messages)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages
            time.sleep(min(IDLE_POLL_SECONDS, remaining))

    def _fetch(self, max_messages: int) -> list[ReceivedMessage]:
        now = time.time()
        rows: list[QueueMessage] = []
        # Start at a different partition each time: a busy one must not starve the others.
        self._turn = (self._turn + 1) % max(len(self.held), 1)
        for partition in self.held[self._turn :] + self.held[: self._turn]:
            if len(rows) >= max_messages:
                break
            after = max(self._inflight.get(partition) or {0})
            head = (
                QueueMessage.objects.filter(self._scope, partition=partition, id__gt=after)
                .order_by("id")
                .only(*RECEIVED_COLUMNS)[: max_messages - len(rows)]
            )
            for row in head:
                if row.available_at > now:
                    break  # a message waiting for redelivery holds back the ones after it: key order
                rows.append(row)
        if not rows:
            return []
        # Delivered more than MAX_REDELIVERIES + 1 times and never (n)acked: its consumers
        # died on it. It goes to the dead-letter topic instead of killing the next one.
        dead = [r for r in rows if r.deliveries > settings.MAX_REDELIVERIES]
        if dead:
            self._dead_letter(dead, error="not acknowledged after the maximum number of deliveries")
            rows = [r for r in rows if r.deliveries <= settings.MAX_REDELIVERIES]
        with transaction.atomic():
            QueueMessage.objects.filter(id__in=[r.id for r in rows]).update(deliveries=F("deliveries") + 1)
        messages = []
        for row in rows:
            self._inflight.setdefault(row.partition, set()).add(row.id)
            messages.append(
                ReceivedMessage(
                    id=row.id,
                    topic=self.topic,
                    partition=row.partition,
                    key=row.key,
                    payload=orjson.loads(row.payload),
                    redelivery_count=row.deliveries,
                    published_at=row.published_at.timestamp(),
                )
            )
        return messages

    def _settle(self, messages: Iterable[ReceivedMessage]) -> None:
        for m in messages:
            self._inflight.get(m.partition, set()).discard(m.id)

    def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        if messages:
            with transaction.atomic():
                deleted, _ = QueueMessage.objects.filter(id__in=[m.id for m in messages]).delete()
                count_messages(self.topic.name, acknowledged=deleted)
        self._settle(messages)

    def negative_acknowledge(self, messages: Sequence[ReceivedMessage], *, error: str = "") -> None:
        exhausted = [m for m in messages if m.redelivery_count >= settings.MAX_REDELIVERIES]
        retry = [m.id for m in messages if m.redelivery_count < settings.MAX_REDELIVERIES]
        if retry:
            with transaction.atomic():
                QueueMessage.objects.filter(id__in=retry).update(
                    available_at=time.time() + settings.QUEUE_NACK_DELAY_SECONDS, error=error[:10_000]
                )
        if exhausted:
            self._dead_letter(QueueMessage.objects.filter(id__in=[m.id for m in exhausted]), error=error)
        self._settle(messages)

    def _dead_letter(self, rows: Iterable[QueueMessage], *, error: str) -> None:
        dlq = self.topic.dead_letter
        with transaction.atomic():
            rows = list(rows)
            QueueMessage.objects.bulk_create(
                [
                    QueueMessage(
                        topic=dlq.name,
                        partition=r.partition,
                        subscription=dlq.subscription,
                        key=r.key,
                        payload=r.payload,
                        # How often it was delivered, for the console; nothing consumes dead letters.
                        deliveries=r.deliveries,
                        error=(error or r.error)[:10_000],
                    )
                    for r in rows
                ]
            )
            count_messages(dlq.name, published=len(rows))
            QueueMessage.objects.filter(id__in=[r.id for r in rows]).delete()

    def redeliver_unacknowledged(self) -> None:
        self._inflight.clear()

    def close(self) -> None:
        with transaction.atomic():
            QueueLease.objects.filter(self._scope, owner=self.owner).update(owner="", expires_at=0.0)
            QueueConsumer.objects.filter(self._scope, owner=self.owner).delete()
        self.held = []
