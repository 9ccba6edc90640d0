"""The django-q2 wiring: a real `manage.py qcluster`, and `run_workers` running one."""

from __future__ import annotations

import os
import re

import pytest

from tests.helpers import wait_for
from workflows.models import Delivery, DeliveryStatus
from workflows.outbox import enqueue_delivery

pytestmark = pytest.mark.django_db(transaction=True)

# Retries in tenths of seconds for the cluster's processes too.
FAST_OUTBOX_ENV = {"OUTBOX_RETRY_BASE_SECONDS": "0.4", "OUTBOX_RETRY_MAX_SECONDS": "1"}


def status(delivery: Delivery) -> str:
    return Delivery.objects.get(pk=delivery.pk).status


def test_a_delivery_is_sent_by_a_real_qcluster_and_its_retry_runs_on_time(spawn, receiver):
    receiver.answer(503)
    cluster = spawn("qcluster", env=FAST_OUTBOX_ENV)
    delivery = enqueue_delivery(
        kind="http", key="cluster-1", request={"url": receiver.url, "body": {"a": 1}}, origin={"run_id": "r1"}
    )
    wait_for(lambda: status(delivery) == DeliveryStatus.DELIVERED, timeout=60, message=f"delivered; {cluster.log}")
    first, second = receiver.received
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == "cluster-1"
    # Queued for its time (0.2-0.4 s of backoff), not for the scheduler's next 30 s round.
    assert 0.15 <= second.at - first.at < 20  # slack for a loaded machine, well under 30 s
    assert Delivery.objects.get(pk=delivery.pk).attempts == 2


def test_run_workers_runs_the_cluster_restarts_it_and_stops_it(spawn, receiver, worker_settings):
    worker_settings("background", enabled=False)
    worker_settings("collector", enabled=False)
    supervisor = spawn("run_workers", env=FAST_OUTBOX_ENV)
    match = wait_for(
        lambda: re.search(r"Started qcluster worker, pid (\d+)", supervisor.output()), timeout=90, message="qcluster"
    )
    pid = int(match.group(1))
    delivery = enqueue_delivery(kind="http", key="supervised-1", request={"url": receiver.url, "body": {}})
    wait_for(lambda: status(delivery) == DeliveryStatus.DELIVERED, timeout=60, message="delivered by run_workers")

    os.kill(pid, 15)  # a cluster that stops is started again
    wait_for(lambda: f"qcluster worker pid {pid} exited" in supervisor.output(), timeout=60, message="exit seen")
    restarted = wait_for(
        lambda: [p for p in re.findall(r"Started qcluster worker, pid (\d+)", supervisor.output()) if int(p) != pid],
        timeout=90,
        message="a new cluster",
    )
    new_pid = int(restarted[0])
    assert supervisor.stop() == 0
    # Stopped with the supervisor (a child it did not reap is reaped by init a moment later).
    wait_for(lambda: not alive(new_pid), timeout=30, message="the cluster stopped")


def alive(pid: int) -> bool:
    """Running: a zombie (exited, not yet reaped by whoever inherited it) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
