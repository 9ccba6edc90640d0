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
from collections.abc import Sequence

import orjson
import pulsar
import requests
from django.conf import settings

from queueing.broker import (
    Broker,
    BrokerUnavailable,
    Consumer,
    OutgoingMessage,
    PartitionBacklog,
    ReceivedMessage,
    TopicFlow,
)
from queueing.topics import MAIN_TOPICS, NAMESPACE, Topic

logger = logging.getLogger(__name__)


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
        if response.status_code not in ok:
            raise RuntimeError(f"Pulsar admin API: {response.status_code} {response.text[:300]}")
        return response

    def ensure_tenant(self, tenant: str) -> None:
        if self._call("GET", f"/admin/v2/tenants/{tenant}").status_code == 200:
            return
        clusters = self._expect(self._call("GET", "/admin/v2/clusters"), 200).json()
        self._expect(self._call("PUT", f"/admin/v2/tenants/{tenant}", json={"allowedClusters": clusters}), 204, 409)

    def ensure_namespace(self, namespace: str) -> None:
        self._expect(self._call("PUT", f"/admin/v2/namespaces/{namespace}"), 204, 409)

    def ensure_partitioned_topic(self, path: str, partitions: int) -> None:
        """`path` is tenant/namespace/topic. Grows the partition count when it was lower."""
        response = self._call("GET", f"/admin/v2/persistent/{path}/partitions")
        current = response.json().get("partitions", 0) if response.status_code == 200 else 0
        if current == 0:
            self._expect(self._call("PUT", f"/admin/v2/persistent/{path}/partitions", json=partitions), 204, 409)
        elif current < partitions:
            self._expect(self._call("POST", f"/admin/v2/persistent/{path}/partitions", json=partitions), 204)
        elif current > partitions:
            logger.warning("Topic %s has %d partitions, more than QUEUE_PARTITIONS=%d", path, current, partitions)

    def ensure_subscription(self, path: str, subscription: str) -> None:
        self._expect(self._call("PUT", f"/admin/v2/persistent/{path}/subscription/{subscription}"), 204, 409)

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
        if not messages:
            return
        self._ensure_ready()
        results: list[pulsar.Result] = []
        done = threading.Event()
        lock = threading.Lock()

        def confirmed(result: pulsar.Result, _message_id: object) -> None:
            with lock:
                results.append(result)
                if len(results) == len(messages):
                    done.set()

        try:
            for message in messages:
                self._producer(message.topic).send_async(
                    orjson.dumps(message.payload), confirmed, partition_key=message.key
                )
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
