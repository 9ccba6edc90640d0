"""The database broker: partitions, leases, order, acknowledgement, redelivery, dead letters."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from queueing.backends.database import DatabaseBroker
from queueing.broker import OutgoingMessage
from queueing.models import QueueMessage
from queueing.topics import FUNCTIONS, partition_for
from tests.helpers import wait_for
from tests.support.processes import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def messages(key: str, n: int, start: int = 0) -> list[OutgoingMessage]:
    return [OutgoingMessage(topic=FUNCTIONS, key=key, payload={"n": i}) for i in range(start, start + n)]


def drain(consumer, *, timeout: float = 1.0) -> list:
    got = []
    while batch := consumer.receive(max_messages=100, timeout=timeout):
        got += batch
    return got


def backlog_counts(broker: DatabaseBroker) -> dict[str, int]:
    return {e.partition.rsplit("-", 1)[-1]: e.count for e in broker.backlog(topic=FUNCTIONS)}


# Computed once with queueing.topics.partition_for; a change here moves keys between partitions
# of topics that already hold messages, which breaks per-key order across a deploy.
KNOWN_PARTITIONS = {
    "profile-1": (0, 4),
    "profile-2": (2, 6),
    "session-abc": (3, 7),
    "a": (3, 3),
    "ä-ünïcode": (1, 1),
    "": (0, 0),
}


def test_a_known_key_maps_to_a_known_partition():
    assert {key: (partition_for(key, 4), partition_for(key, 8)) for key in KNOWN_PARTITIONS} == KNOWN_PARTITIONS
    assert {partition_for(f"k{i}", 4) for i in range(100)} == {0, 1, 2, 3}


def test_another_process_with_another_hash_seed_picks_the_same_partitions():
    """Publishers and consumers are different processes: str hashing is salted per process,
    the partition must not be."""
    script = (
        "import json, sys; from queueing.topics import partition_for; "
        "print(json.dumps({k: [partition_for(k, 4), partition_for(k, 8)] for k in json.loads(sys.argv[1])}))"
    )
    keys = [*KNOWN_PARTITIONS, *(f"profile-{i}" for i in range(50))]
    answers = [
        subprocess.run(
            [sys.executable, "-c", script, json.dumps(keys)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for seed in ("1", "2")
    ]
    here = {key: [partition_for(key, 4), partition_for(key, 8)] for key in keys}
    assert [json.loads(answer) for answer in answers] == [here, here]


def test_publish_is_one_batch_and_the_backlog_counts_it_exactly():
    broker = DatabaseBroker(partitions=4)
    broker.publish(messages("a", 3) + messages("b", 2))
    entries = broker.backlog(topic=FUNCTIONS)
    assert [e.partition for e in entries] == [f"persistent://tracardi/system/functions-partition-{p}" for p in range(4)]
    assert {e.subscription for e in entries} == {"tracardi-function-subscription"}
    counts = backlog_counts(broker)
    assert counts[str(partition_for("a", 4))] >= 3
    assert sum(counts.values()) == 5


def test_messages_of_a_key_arrive_in_order_and_ack_removes_them():
    broker = DatabaseBroker(partitions=4)
    broker.publish(messages("k", 50))
    consumer = broker.subscribe(topic=FUNCTIONS, consumer_name="t")
    got = drain(consumer, timeout=0.2)
    assert [m.payload["n"] for m in got] == list(range(50))
    assert all(m.redelivery_count == 0 for m in got)
    assert sum(backlog_counts(broker).values()) == 50  # delivered is not acknowledged
    consumer.acknowledge(got)
    assert sum(backlog_counts(broker).values()) == 0


def test_two_consumers_share_the_partitions_without_overlap(settings):
    broker = DatabaseBroker(partitions=4)
    first = broker.subscribe(topic=FUNCTIONS, consumer_name="one")
    first.receive(max_messages=1, timeout=0)
    assert first.held == [0, 1, 2, 3]
    second = broker.subscribe(topic=FUNCTIONS, consumer_name="two")
    second.receive(max_messages=1, timeout=0)  # registers; nothing free yet
    first._next_maintenance = 0  # the next renewal of `first` sees two live consumers
    first.receive(max_messages=1, timeout=0)
    second._next_maintenance = 0
    second.receive(max_messages=1, timeout=0)
    assert len(first.held) == 2 and len(second.held) == 2
    assert not set(first.held) & set(second.held)


def test_a_consumer_that_stops_renewing_loses_its_partitions(settings):
    settings.QUEUE_LEASE_SECONDS = 3.0  # the other's first receive must come before it expires
    broker = DatabaseBroker(partitions=2)
    broker.publish(messages("k", 3))
    dead = broker.subscribe(topic=FUNCTIONS, consumer_name="dead")
    taken = dead.receive(max_messages=10, timeout=0.2)
    assert len(taken) == 3  # then it "dies": no ack, no renewal
    other = broker.subscribe(topic=FUNCTIONS, consumer_name="other")
    assert other.receive(max_messages=10, timeout=0.2) == []

    def taken_over() -> list:
        other._next_maintenance = 0  # renews now: takes the partitions whose lease expired
        return other.receive(max_messages=10, timeout=0.1)

    redelivered = wait_for(taken_over, timeout=20, message="the dead consumer's lease to expire")
    assert [m.payload["n"] for m in redelivered] == [0, 1, 2]
    assert all(m.redelivery_count == 1 for m in redelivered)


def test_nack_redelivers_after_the_delay_and_holds_back_the_partition(settings):
    # Long enough that the nack, a publish and an empty receive fit in it on a loaded machine.
    settings.QUEUE_NACK_DELAY_SECONDS = 2.0
    broker = DatabaseBroker(partitions=1)
    broker.publish(messages("k", 2))
    consumer = broker.subscribe(topic=FUNCTIONS, consumer_name="t")
    first, second = consumer.receive(max_messages=10, timeout=0.2)
    consumer.acknowledge([second])
    consumer.negative_acknowledge([first], error="boom")
    broker.publish(messages("k", 1, start=2))
    assert consumer.receive(max_messages=10, timeout=0.1) == []  # message 2 waits behind message 0
    again = consumer.receive(max_messages=10, timeout=10.0)
    assert [m.payload["n"] for m in again] == [0, 2]
    assert again[0].redelivery_count == 1


def test_after_max_redeliveries_a_message_moves_to_the_dead_letter_topic(settings):
    settings.QUEUE_NACK_DELAY_SECONDS = 0
    settings.MAX_REDELIVERIES = 2
    broker = DatabaseBroker(partitions=1)
    broker.publish(messages("k", 2))
    consumer = broker.subscribe(topic=FUNCTIONS, consumer_name="t")
    for attempt in range(3):
        head = consumer.receive(max_messages=1, timeout=0.5)
        assert head[0].payload["n"] == 0 and head[0].redelivery_count == attempt
        consumer.negative_acknowledge(head, error="always fails")
    (dead,) = QueueMessage.objects.filter(topic="functions-DLQ")
    assert dead.error == "always fails" and dead.key == "k"
    assert [m.payload["n"] for m in consumer.receive(max_messages=5, timeout=0.5)] == [1]
    dlq = {e.partition: e.count for e in broker.backlog(topic=FUNCTIONS.dead_letter)}
    assert dlq == {"persistent://tracardi/system/functions-DLQ-partition-0": 1}


def test_a_message_whose_consumers_keep_dying_is_dead_lettered(settings):
    settings.MAX_REDELIVERIES = 1
    broker = DatabaseBroker(partitions=1)
    broker.publish(messages("k", 2))
    for _ in range(2):  # delivered twice, never settled: two consumers died on it
        consumer = broker.subscribe(topic=FUNCTIONS, consumer_name="t")
        assert consumer.receive(max_messages=1, timeout=0.2)[0].payload["n"] == 0
        consumer.close()
    survivor = broker.subscribe(topic=FUNCTIONS, consumer_name="t")
    assert [m.payload["n"] for m in survivor.receive(max_messages=5, timeout=0.2)] == [1]
    assert QueueMessage.objects.filter(topic="functions-DLQ").count() == 1


def test_a_new_consumer_gets_its_share_within_about_a_second(settings):
    """Without waiting for the next lease renewal (QUEUE_LEASE_SECONDS / 3)."""
    settings.QUEUE_LEASE_SECONDS = 30.0
    broker = DatabaseBroker(partitions=4)
    first = broker.subscribe(topic=FUNCTIONS, consumer_name="one")
    first.receive(max_messages=1, timeout=0)
    second = broker.subscribe(topic=FUNCTIONS, consumer_name="two")

    def shared() -> bool:
        first.receive(max_messages=1, timeout=0.05)
        second.receive(max_messages=1, timeout=0.05)
        return len(first.held) == 2 and len(second.held) == 2

    wait_for(shared, timeout=5, message="both consumers hold 2 partitions")  # was 10 s and more
    assert not set(first.held) & set(second.held)
