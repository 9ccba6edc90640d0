"""The console's numbers on their own: rates, ages, Pulsar's stats, the database broker's
counters, the sampler's one-sample-per-period rule and retention, the Helm value names."""

from __future__ import annotations

import pytest

from console.selectors import throughput, topic_rates
from queueing.backends.database import DatabaseBroker
from queueing.backends.pulsar import pulsar_flow
from queueing.broker import OutgoingMessage
from queueing.helm import HELM_VALUES, helm_values, settings_from_helm, to_yaml
from queueing.metrics import Point, oldest_age, point_before, rate
from queueing.models import BacklogSample, WorkerHeartbeat, WorkerSample, WorkerSettings
from queueing.sampling import record_samples
from queueing.topics import FUNCTIONS

T0 = 1_800_000_000.0


def test_a_rate_is_the_counter_difference_per_second():
    assert rate(Point(T0, 100), Point(T0 + 5, 150)) == 10.0
    assert rate(Point(T0, 100), Point(T0 + 5, 100)) == 0.0


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        (None, Point(T0, 1)),
        (Point(T0, 1), None),
        (Point(T0, 1), Point(T0, 5)),  # no time between them
        (Point(T0, 50), Point(T0 + 5, 10)),  # the counter restarted: no rate, not a negative one
    ],
)
def test_no_rate_without_a_usable_pair(earlier, later):
    assert rate(earlier, later) is None


def test_the_point_a_minute_back_is_the_latest_before_it_or_else_the_oldest():
    points = [Point(T0, 0), Point(T0 + 30, 3), Point(T0 + 70, 9)]
    assert point_before(points, T0 + 40) == Point(T0 + 30, 3)
    assert point_before(points, T0 - 10) == Point(T0, 0)  # samples younger than the window
    assert point_before([], T0) is None


def test_the_oldest_message_age():
    assert oldest_age(T0, now=T0 + 12.5, total=3) == 12.5
    assert oldest_age(T0, now=T0 - 1, total=3) == 0.0  # clocks a little apart
    assert oldest_age(T0, now=T0 + 12, total=0) is None  # drained since the sample
    assert oldest_age(None, now=T0, total=3) is None


def sample(at: float, **values: object) -> BacklogSample:
    return BacklogSample(topic="functions", slot=int(at // 5), taken_at=at, total=0, **values)


def test_topic_rates_from_the_database_brokers_counters_or_pulsars_own_rates():
    counters = [sample(T0, published=10, acknowledged=0), sample(T0 + 5, published=60, acknowledged=20)]
    assert topic_rates(counters) == (10.0, 4.0)
    assert topic_rates(counters[:1]) == (None, None)
    assert topic_rates([]) == (None, None)
    assert topic_rates([sample(T0, rate_in=7.5, rate_out=2.0)]) == (7.5, 2.0)


PULSAR_STATS = {
    "msgRateIn": 12.5,
    "msgInCounter": 1000,
    "partitions": {
        "persistent://t/system/functions-partition-0": {
            "subscriptions": {
                "tracardi-function-subscription": {
                    "msgBacklog": 3,
                    "messageAckRate": 4.0,
                    "earliestMsgPublishTimeInBacklog": int(T0 * 1000),
                }
            }
        },
        "persistent://t/system/functions-partition-1": {
            "subscriptions": {
                "tracardi-function-subscription": {
                    "msgBacklog": 0,
                    "messageAckRate": 1.5,
                    "earliestMsgPublishTimeInBacklog": -1,
                }
            }
        },
    },
}


def test_pulsar_rates_and_oldest_message_come_from_the_topic_stats():
    flow = pulsar_flow(PULSAR_STATS, subscription="tracardi-function-subscription")
    assert (flow.rate_in, flow.rate_out, flow.published) == (12.5, 5.5, 1000)
    assert flow.oldest_published_at == T0 and flow.oldest_known


def test_pulsar_without_the_earliest_time_says_the_age_is_not_available():
    stats = {"msgRateIn": 0.0, "partitions": {"p0": {"subscriptions": {"s": {"msgBacklog": 2}}}}}
    flow = pulsar_flow(stats, subscription="s")
    assert flow.oldest_published_at is None and not flow.oldest_known
    assert not pulsar_flow({}, subscription="s").oldest_known  # no stats at all


@pytest.mark.django_db
def test_the_database_broker_counts_published_and_acknowledged_messages():
    broker = DatabaseBroker(partitions=2)
    assert broker.flow(topic=FUNCTIONS).published == 0
    broker.publish([OutgoingMessage(topic=FUNCTIONS, key=f"k{i}", payload={}) for i in range(5)])
    consumer = broker.subscribe(topic=FUNCTIONS, consumer_name="test")
    received = consumer.receive(max_messages=3, timeout=1)
    consumer.acknowledge(received)
    flow = broker.flow(topic=FUNCTIONS)
    assert (flow.published, flow.acknowledged) == (5, len(received))
    assert flow.oldest_published_at is not None
    consumer.acknowledge(consumer.receive(max_messages=10, timeout=1))
    assert broker.flow(topic=FUNCTIONS).oldest_published_at is None
    consumer.close()


@pytest.mark.django_db
def test_one_sample_per_period_and_old_samples_are_deleted(settings):
    settings.BACKLOG_SAMPLE_SECONDS = 5.0
    settings.BACKLOG_SAMPLES_KEEP_SECONDS = 900
    broker = DatabaseBroker(partitions=2)
    broker.publish([OutgoingMessage(topic=FUNCTIONS, key="a", payload={})])
    assert record_samples(broker=broker, now=T0)
    assert not record_samples(broker=broker, now=T0 + 2)  # another process was first
    assert record_samples(broker=broker, now=T0 + 5)
    row = BacklogSample.objects.get(topic="functions", taken_at=T0)
    assert (row.total, row.published, row.acknowledged) == (1, 1, 0)
    assert BacklogSample.objects.filter(topic="functions").count() == 2
    assert record_samples(broker=broker, now=T0 + 911)
    assert list(BacklogSample.objects.filter(topic="functions").values_list("taken_at", flat=True)) == [T0 + 911]
    assert WorkerSample.objects.filter(taken_at__lt=T0 + 911).count() == 0


@pytest.mark.django_db
def test_worker_throughput_over_the_last_minute_from_heartbeat_counters():
    from django.utils import timezone

    now = timezone.now()
    beat = WorkerHeartbeat.objects.create(
        worker_type="background", host="h", pid=1, started_at=now, last_seen=now, processed=600
    )
    WorkerSample.objects.create(worker_type="background", slot=0, taken_at=T0 - 60, processed=0)
    rates = throughput(now=T0)
    assert rates["background"] is None  # sample too old for the window: nothing to compare with
    WorkerSample.objects.create(worker_type="background", slot=int((T0 - 60) // 5), taken_at=T0 - 60, processed=0)
    assert throughput(now=T0)["background"] == 10.0
    beat.delete()


def test_helm_value_names_and_yaml():
    rows = [
        WorkerSettings(worker_type="workflow", enabled=False, replicas=1, logging_level="INFO",
                       min_batch_size=100, max_batch_size=1000, max_time_in_buffer=1.0),
        WorkerSettings(worker_type="background", enabled=True, replicas=3, logging_level="DEBUG",
                       min_batch_size=10, max_batch_size=500, max_time_in_buffer=0.5),
    ]  # fmt: skip
    values = helm_values(rows)
    assert list(values)[:6] == [
        "worker.background.enabled",
        "worker.background.replicas",
        "worker.background.config.loggingLevel",
        "worker.background.config.bulker.minBatchSize",
        "worker.background.config.bulker.maxBatchSize",
        "worker.background.config.bulker.maxTimeInBuffer",
    ]
    assert values["worker.workflow.enabled"] is False
    assert to_yaml(values).startswith(
        "worker:\n  background:\n    enabled: true\n    replicas: 3\n    config:\n"
        '      loggingLevel: "DEBUG"\n      bulker:\n        minBatchSize: 10\n        maxBatchSize: 500\n'
        "        maxTimeInBuffer: 0.5\n  workflow:\n    enabled: false\n"
    )
    back = settings_from_helm(values)
    assert back["background"] == {v.field: getattr(rows[1], v.field) for v in HELM_VALUES}
    assert "collector" not in back
