"""The `pulsar` broker: Apache Pulsar partitioned topics through pulsar-client.

Subscriptions are Key_Shared: with several worker replicas, each key (profile) is
delivered to one consumer at a time and in order, and Pulsar counts redeliveries, so
its dead-letter policy works (a Failover subscription keeps order too, but the client
does not count its redeliveries and never dead-letters). Topics, their dead-letter
topics and the subscriptions are created through the admin REST API before first use:
Pulsar keeps messages only for subscriptions that exist.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson
import pulsar
import requests
from django.conf import settings

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
from queueing.topics import MAIN_TOPICS, NAMESPACE, Topic

logger = logging.getLogger(__name__)

# The console reads a dead-letter topic whole (to search and page it); beyond this many
# messages it shows, replays and purges (selected) the first ones only. Purging all has
# no limit (the admin API skips the whole backlog).
DEAD_LETTER_SCAN_LIMIT = 10_000

# What to do with the dead letters read (the consumer is None when there are none).
DeadLetterAction = Callable[["pulsar.Consumer | None", list[pulsar.Message]], int]


class PulsarAdmin:
    """The few admin REST calls the broker needs; every one idempotent."""

    def __init__(self, *, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self.http.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise BrokerUnavailable(f"Pulsar admin API at {self.url} is unreachable: {exc}") from exc
        if response.status_code >= 500:
            raise BrokerUnavailable(f"Pulsar admin API {method} {path}: {response.status_code} {response.text[:300]}")
        return response

    def _expect(self, response: requests.Response, *ok: int) -> requests.Response:
        # Unavailable, not a bug: whatever Pulsar refused, the write was not accepted, and
        # /track must answer 503 (retry later), never 500.
        if response.status_code not in ok:
            raise BrokerUnavailable(f"Pulsar admin API: {response.status_code} {response.text[:300]}")
        return response

    def _create(self, path: str, exists: Callable[[], bool], **kwargs) -> None:
        """PUT `path` (204 created, 409 there already). Processes that set up a new tenant at
        the same time race: Pulsar can answer the loser with a 500 ("BadVersionException:
        Version mismatch" from its metadata store, seen when gunicorn's workers all made the
        tenant on their first request). Whatever the answer, what exists afterwards is as
        good as created."""
        try:
            self._expect(self._call("PUT", path, **kwargs), 204, 409)
        except BrokerUnavailable:
            if not exists():
                raise

    def ensure_tenant(self, tenant: str) -> None:
        def exists() -> bool:
            return self._call("GET", f"/admin/v2/tenants/{tenant}").status_code == 200

        if exists():
            return
        clusters = self._expect(self._call("GET", "/admin/v2/clusters"), 200).json()
        self._create(f"/admin/v2/tenants/{tenant}", exists, json={"allowedClusters": clusters})

    def ensure_namespace(self, namespace: str) -> None:
        def exists() -> bool:
            return self._call("GET", f"/admin/v2/namespaces/{namespace}/policies").status_code == 200

        self._create(f"/admin/v2/namespaces/{namespace}", exists)

    def _partitions(self, path: str) -> int:
        response = self._call("GET", f"/admin/v2/persistent/{path}/partitions")
        return response.json().get("partitions", 0) if response.status_code == 200 else 0

    def ensure_partitioned_topic(self, path: str, partitions: int) -> None:
        """`path` is tenant/namespace/topic. Grows the partition count when it was lower."""
        current = self._partitions(path)
        if current == 0:
            self._create(f"/admin/v2/persistent/{path}/partitions", lambda: self._partitions(path) > 0, json=partitions)
        elif current < partitions:
            self._expect(self._call("POST", f"/admin/v2/persistent/{path}/partitions", json=partitions), 204)
        elif current > partitions:
            logger.warning("Topic %s has %d partitions, more than QUEUE_PARTITIONS=%d", path, current, partitions)

    def ensure_subscription(self, path: str, subscription: str) -> None:
        # 409: it exists. 412 "Subscription Busy / Failed to fence": it exists and a consumer
        # is attached right now (a worker started first): as good, for a setup.
        self._expect(self._call("PUT", f"/admin/v2/persistent/{path}/subscription/{subscription}"), 204, 409, 412)

    def skip_all(self, path: str, subscription: str) -> None:
        self._expect(self._call("POST", f"/admin/v2/persistent/{path}/subscription/{subscription}/skip_all"), 204)

    def partitioned_stats(self, path: str, *, earliest_in_backlog: bool = False) -> dict:
        """`earliest_in_backlog`: Pulsar also reads the oldest waiting message of each
        subscription (one ledger read per partition, so only when asked)."""
        params = {"perPartition": "true"}
        if earliest_in_backlog:
            params["getEarliestTimeInBacklog"] = "true"
        response = self._call("GET", f"/admin/v2/persistent/{path}/partitioned-stats", params=params)
        if response.status_code == 404:
            return {}
        return self._expect(response, 200).json()


def pulsar_flow(stats: dict, *, subscription: str) -> TopicFlow:
    """A TopicFlow from partitioned-stats (perPartition, getEarliestTimeInBacklog)."""
    if not stats:
        return TopicFlow(oldest_known=False)
    subs = [
        part.get("subscriptions", {}).get(subscription, {}) for part in (stats.get("partitions") or {}).values()
    ] or [stats.get("subscriptions", {}).get(subscription, {})]
    waiting = sum(int(s.get("msgBacklog", 0)) for s in subs)
    # Milliseconds; -1 or 0 when the subscription has nothing waiting (or the broker did not read it).
    earliest = [s["earliestMsgPublishTimeInBacklog"] for s in subs if s.get("earliestMsgPublishTimeInBacklog", 0) > 0]
    known = waiting == 0 or bool(earliest)
    return TopicFlow(
        published=int(stats["msgInCounter"]) if "msgInCounter" in stats else None,
        rate_in=float(stats.get("msgRateIn", 0.0)),
        rate_out=sum(float(s.get("messageAckRate", 0.0)) for s in subs),
        oldest_published_at=min(earliest) / 1000 if earliest and waiting else None,
        oldest_known=known,
    )


class PulsarBroker(Broker):
    def __init__(
        self,
        *,
        service_url: str | None = None,
        admin_url: str | None = None,
        partitions: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self.partitions = partitions or settings.QUEUE_PARTITIONS
        self.timeout = timeout or settings.PULSAR_TIMEOUT_SECONDS
        self.service_url = service_url or settings.PULSAR_SERVICE_URL
        self.admin = PulsarAdmin(url=admin_url or settings.PULSAR_ADMIN_URL, timeout=self.timeout)
        self.client = pulsar.Client(
            self.service_url,
            operation_timeout_seconds=max(1, int(self.timeout)),
            connection_timeout_ms=int(self.timeout * 1000),
            logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
        )
        self._producers: dict[str, pulsar.Producer] = {}
        self._lock = threading.Lock()
        self._ready = False

    def _path(self, topic: Topic) -> str:
        return f"{settings.TENANT}/{NAMESPACE}/{topic.name}"

    def setup(self) -> None:
        """Tenant, namespace, partitioned topics, dead-letter topics and subscriptions."""
        self.admin.ensure_tenant(settings.TENANT)
        self.admin.ensure_namespace(f"{settings.TENANT}/{NAMESPACE}")
        for topic in MAIN_TOPICS:
            for each in (topic, topic.dead_letter):
                self.admin.ensure_partitioned_topic(self._path(each), self.partitions)
                self.admin.ensure_subscription(self._path(each), each.subscription)
        self._ready = True

    def _ensure_ready(self) -> None:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self.setup()

    def _producer(self, topic: Topic) -> pulsar.Producer:
        with self._lock:
            producer = self._producers.get(topic.name)
            if producer is None:
                try:
                    producer = self.client.create_producer(
                        topic.url,
                        send_timeout_millis=int(self.timeout * 1000),
                        block_if_queue_full=True,
                        # Off: Pulsar counts a batch as one entry in msgBacklog, and the backlog
                        # API promises exact message counts.
                        batching_enabled=False,
                    )
                except pulsar.PulsarException as exc:
                    raise BrokerUnavailable(f"cannot create a Pulsar producer for {topic.url}: {exc}") from exc
                self._producers[topic.name] = producer
            return producer

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Sends all, then waits for every confirmation. Pulsar has no atomic multi-message
        publish: after a failure some may have been stored; a retry may repeat them, and the
        store applies each job and event once."""
        self._send([(m.topic, m.key, orjson.dumps(m.payload)) for m in messages])

    def _send(self, messages: Sequence[tuple[Topic, str, bytes]]) -> None:
        if not messages:
            return
        self._ensure_ready()
        if len(messages) == 1:
            # One message (every /track request publishes one): the client's blocking send
            # waits for the confirmation in C++, without a Python callback run on the
            # client's thread and a threading.Event. On 4 threads publishing 1-message
            # requests that halved this process's CPU per message (about 200 -> 70-110 us).
            topic, key, data = messages[0]
            try:
                self._producer(topic).send(data, partition_key=key)
            except pulsar.PulsarException as exc:  # a refusal, or no confirmation within send_timeout
                raise BrokerUnavailable(f"Pulsar did not confirm the message: {exc}") from exc
            return
        results: list[pulsar.Result] = []
        done = threading.Event()
        lock = threading.Lock()

        def confirmed(result: pulsar.Result, _message_id: object) -> None:
            with lock:
                results.append(result)
                if len(results) == len(messages):
                    done.set()

        try:
            for topic, key, data in messages:
                self._producer(topic).send_async(data, confirmed, partition_key=key)
        except pulsar.PulsarException as exc:
            raise BrokerUnavailable(f"Pulsar did not take the messages: {exc}") from exc
        if not done.wait(self.timeout + 1):
            raise BrokerUnavailable(f"Pulsar did not confirm {len(messages)} message(s) within {self.timeout}s")
        failed = [r for r in results if r != pulsar.Result.Ok]
        if failed:
            raise BrokerUnavailable(f"Pulsar refused {len(failed)} of {len(messages)} message(s): {failed[0]}")

    def subscribe(self, *, topic: Topic, consumer_name: str) -> PulsarConsumer:
        self._ensure_ready()
        return PulsarConsumer(client=self.client, topic=topic, consumer_name=consumer_name)

    def backlog(self, *, topic: Topic) -> list[PartitionBacklog]:
        stats = self.admin.partitioned_stats(self._path(topic)).get("partitions", {})
        entries = []
        for partition in range(self.partitions):
            name = topic.partition_url(partition)
            subscriptions = stats.get(name, {}).get("subscriptions", {}) or {topic.subscription: {}}
            entries += [
                PartitionBacklog(partition=name, subscription=sub, count=int(values.get("msgBacklog", 0)))
                for sub, values in sorted(subscriptions.items())
            ]
        return entries

    def flow(self, *, topic: Topic) -> TopicFlow:
        """Pulsar's own rates (msgRateIn, and messageAckRate summed over the partitions'
        subscriptions, averaged by the broker over its stats interval) and the earliest
        publish time of a message still in a backlog, when the broker reports it."""
        stats = self.admin.partitioned_stats(self._path(topic), earliest_in_backlog=True)
        return pulsar_flow(stats, subscription=topic.subscription)

    # --- dead letters -------------------------------------------------------------------
    #
    # Read through the dead-letter subscription itself, so what was replayed or purged
    # (acknowledged there) is gone from the list and from the backlog count. The consumer
    # is Exclusive: two console requests never split the messages between them (the second
    # waits), and closing it without acknowledging hands every message back.

    def _dead_letter_count(self, topic: Topic) -> int:
        return sum(e.count for e in self.backlog(topic=topic.dead_letter) if e.subscription == topic.subscription)

    @contextmanager
    def _dead_letter_consumer(self, topic: Topic) -> Iterator[pulsar.Consumer]:
        self._ensure_ready()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                consumer = self.client.subscribe(
                    topic.dead_letter.url,
                    topic.dead_letter.subscription,
                    consumer_type=pulsar.ConsumerType.Exclusive,
                    consumer_name="console",
                    initial_position=pulsar.InitialPosition.Earliest,
                )
                break
            except pulsar.ConsumerBusy as exc:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable("another console request is reading these dead letters") from exc
                time.sleep(0.1)  # the other request holds it for well under a second
            except pulsar.PulsarException as exc:
                raise BrokerUnavailable(f"cannot read {topic.dead_letter.url}: {exc}") from exc
        try:
            yield consumer
        finally:
            consumer.close()  # flushes the acknowledgements; the rest go back to the subscription

    def _read_dead_letters(self, topic: Topic, act: DeadLetterAction) -> int:
        """Receives the whole dead-letter backlog (up to the scan limit) and lets `act` use it."""
        expected = min(self._dead_letter_count(topic), DEAD_LETTER_SCAN_LIMIT)
        if not expected:
            return act(None, [])
        with self._dead_letter_consumer(topic) as consumer:
            messages: list[pulsar.Message] = []
            while len(messages) < expected:
                try:
                    messages.append(consumer.receive(timeout_millis=int(self.timeout * 1000)))
                except pulsar.Timeout:
                    break
            return act(consumer, messages)

    def _wait_for_count(self, topic: Topic, at_most: int) -> None:
        """Acknowledgements reach the broker asynchronously; the console reads right after."""
        deadline = time.monotonic() + self.timeout
        while self._dead_letter_count(topic) > at_most and time.monotonic() < deadline:
            time.sleep(0.05)

    def dead_letters(self, topic: Topic, *, limit: int = 50, offset: int = 0, search: str = "") -> list[DeadLetter]:
        found: list[DeadLetter] = []

        def collect(_consumer: pulsar.Consumer | None, messages: list[pulsar.Message]) -> int:
            found.extend(_dead_letter(topic, m) for m in messages)
            return len(messages)

        self._read_dead_letters(topic, collect)
        needle = search.casefold()
        matching = [d for d in found if needle in d.key.casefold()] if needle else found
        matching.sort(key=lambda d: (d.dead_lettered_at or datetime.min.replace(tzinfo=UTC), d.id), reverse=True)
        return matching[offset : offset + limit]

    def _settle_dead_letters(self, topic: Topic, ids: Sequence[str] | None, *, replay: bool) -> int:
        wanted = None if ids is None else set(ids)
        before = self._dead_letter_count(topic)

        def settle(consumer: pulsar.Consumer | None, messages: list[pulsar.Message]) -> int:
            chosen = [m for m in messages if wanted is None or _id(m) in wanted]
            if consumer is None or not chosen:
                return 0
            if replay:
                # Published (and confirmed) before acknowledged: a crash in between replays
                # twice, never loses one.
                self._send([(topic, m.partition_key(), m.data()) for m in chosen])
            for message in chosen:
                consumer.acknowledge(message)
            return len(chosen)

        settled = self._read_dead_letters(topic, settle)
        if settled:
            self._wait_for_count(topic, before - settled)
        return settled

    def replay_dead_letters(self, topic: Topic, ids: Sequence[str] | None = None) -> int:
        return self._settle_dead_letters(topic, ids, replay=True)

    def purge_dead_letters(self, topic: Topic, ids: Sequence[str] | None = None) -> int:
        if ids is not None:
            return self._settle_dead_letters(topic, ids, replay=False)
        self._ensure_ready()
        before = self._dead_letter_count(topic)
        self.admin.skip_all(self._path(topic.dead_letter), topic.dead_letter.subscription)
        return before

    def close(self) -> None:
        with self._lock:
            for producer in self._producers.values():
                try:
                    producer.flush()
                    producer.close()
                except pulsar.PulsarException:
                    logger.warning("Could not flush a Pulsar producer on close", exc_info=True)
            self._producers.clear()
        self.client.close()


class PulsarConsumer(Consumer):
    def __init__(self, *, client: pulsar.Client, topic: Topic, consumer_name: str) -> None:
        self.topic = topic
        try:
            self.consumer = client.subscribe(
                topic.url,
                topic.subscription,
                consumer_type=pulsar.ConsumerType.KeyShared,
                consumer_name=consumer_name,
                initial_position=pulsar.InitialPosition.Earliest,
                negative_ack_redelivery_delay_ms=int(settings.QUEUE_NACK_DELAY_SECONDS * 1000),
                dead_letter_policy=pulsar.ConsumerDeadLetterPolicy(
                    max_redeliver_count=settings.MAX_REDELIVERIES,
                    dead_letter_topic=topic.dead_letter.url,
                    initial_subscription_name=topic.dead_letter.subscription,
                ),
                receiver_queue_size=1000,
            )
        except pulsar.PulsarException as exc:
            raise BrokerUnavailable(f"cannot subscribe to {topic.url}: {exc}") from exc
        self._inflight: dict[str, pulsar.Message] = {}

    def receive(self, *, max_messages: int, timeout: float) -> list[ReceivedMessage]:
        received: list[ReceivedMessage] = []
        wait_ms = max(1, int(timeout * 1000))
        while len(received) < max_messages:
            try:
                message = self.consumer.receive(timeout_millis=wait_ms)
            except pulsar.Timeout:
                break
            wait_ms = 1  # after the first, take only what is already here
            message_id = message.message_id().serialize().hex()
            self._inflight[message_id] = message
            try:
                payload = orjson.loads(message.data())
            except orjson.JSONDecodeError:
                payload = {}  # not ours: the worker rejects it and it ends in the dead-letter topic
            received.append(
                ReceivedMessage(
                    id=message_id,
                    topic=self.topic,
                    partition=message.message_id().partition(),
                    key=message.partition_key(),
                    payload=payload,
                    redelivery_count=message.redelivery_count(),
                    published_at=message.publish_timestamp() / 1000,  # the producer's clock, in ms
                )
            )
        return received

    def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        for message in messages:
            self.consumer.acknowledge(self._inflight.pop(message.id))

    def negative_acknowledge(self, messages: Sequence[ReceivedMessage], *, error: str = "") -> None:
        for message in messages:
            self.consumer.negative_acknowledge(self._inflight.pop(message.id))

    def redeliver_unacknowledged(self) -> None:
        self._inflight.clear()
        self.consumer.redeliver_unacknowledged_messages()

    def close(self) -> None:
        try:
            self.consumer.close()
        except pulsar.PulsarException:
            logger.warning("Could not close the Pulsar consumer cleanly", exc_info=True)


def _id(message: pulsar.Message) -> str:
    return message.message_id().serialize().hex()


def _dead_letter(topic: Topic, message: pulsar.Message) -> DeadLetter:
    try:
        payload: object = orjson.loads(message.data())
    except orjson.JSONDecodeError:
        payload = message.data().decode("utf-8", errors="replace")
    properties = message.properties()
    origin = " ".join(filter(None, (properties.get("REAL_TOPIC"), properties.get("ORIGIN_MESSAGE_ID"))))
    return DeadLetter(
        id=_id(message),
        topic=topic,
        key=message.partition_key(),
        payload=payload,
        dead_lettered_at=datetime.fromtimestamp(message.publish_timestamp() / 1000, tz=UTC),
        # Pulsar's dead-letter producer keeps the key, the data and the properties, and adds
        # REAL_TOPIC and ORIGIN_MESSAGE_ID; neither the redelivery count nor the error.
        deliveries=None,
        error=None,
        origin=origin,
    )
