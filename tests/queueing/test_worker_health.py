"""Hang detection from heartbeats: the decision, the heartbeats a waiting worker writes, the
console's view of them. The supervisor acting on it is in test_workers.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from queueing.health import HangPolicy, Health, WorkerState, listed_workers
from queueing.models import WorkerHeartbeat
from queueing.supervisor import Supervisor
from tests.support.jobs import publish_event_job

POLICY = HangPolicy(heartbeat_seconds=2.0, hang_seconds=60.0, grace_seconds=30.0)
T0 = 1_800_000_000.0  # epoch seconds


@pytest.mark.parametrize(
    ("last_seen", "now", "expected"),
    [
        (T0, T0 + 1, Health(WorkerState.RUNNING, 1.0)),
        (T0, T0 + 6, Health(WorkerState.RUNNING, 6.0)),  # three beats late at most: still running
        (T0, T0 + 7, Health(WorkerState.SILENT, 7.0)),
        (T0, T0 + 60, Health(WorkerState.SILENT, 60.0)),
        (T0, T0 + 60.5, Health(WorkerState.HUNG, 60.5)),
        (T0 + 5, T0 + 4, Health(WorkerState.RUNNING, 0.0)),  # a heartbeat from a clock slightly ahead
    ],
)
def test_a_worker_is_hung_once_its_heartbeat_is_silent_past_the_limit(last_seen, now, expected):
    assert POLICY.health(started=T0 - 100, last_seen=last_seen, now=now) == expected


def test_a_new_worker_has_the_grace_period_for_its_first_heartbeat():
    assert POLICY.health(started=T0, last_seen=None, now=T0 + 30) == Health(WorkerState.STARTING, 30.0)
    assert POLICY.health(started=T0, last_seen=None, now=T0 + 31) == Health(WorkerState.HUNG, 31.0)
    # Once it has beaten, the hang limit counts from that heartbeat, not from its start.
    assert POLICY.health(started=T0, last_seen=T0 + 29, now=T0 + 80).state is WorkerState.SILENT


def test_the_supervisor_holds_no_silence_against_a_worker_from_before_it_could_read_heartbeats():
    supervisor = Supervisor(policy=POLICY)
    supervisor.observed_since = None
    assert supervisor.judge(spawned=T0, last_seen=T0 + 1, now=T0 + 100).state is WorkerState.HUNG
    # The database was down until T0 + 90: the worker could not write its heartbeat either.
    supervisor.observed_since = T0 + 90
    assert supervisor.judge(spawned=T0, last_seen=T0 + 1, now=T0 + 100) == Health(WorkerState.SILENT, 10.0)
    assert supervisor.judge(spawned=T0, last_seen=None, now=T0 + 100) == Health(WorkerState.STARTING, 10.0)
    assert supervisor.judge(spawned=T0, last_seen=T0 + 1, now=T0 + 151).state is WorkerState.HUNG


@pytest.fixture
def background_worker(db, settings, worker_settings):
    from storage.workers.background import BackgroundWorker

    settings.WORKER_HEARTBEAT_SECONDS = 0.1
    worker = BackgroundWorker()
    worker.beat()
    yield worker
    worker.consumer.close()


def last_seen(pid: int) -> float:
    return WorkerHeartbeat.objects.get(pid=pid, stopped=False).last_seen.timestamp()


def test_a_worker_waiting_to_retry_a_backend_keeps_writing_its_heartbeat(background_worker):
    first = last_seen(background_worker._heartbeat.pid)
    assert background_worker.sleep(0.6)  # what handle_until_available does between tries
    assert last_seen(background_worker._heartbeat.pid) - first >= 0.4


def test_a_worker_waiting_for_its_batch_to_fill_keeps_writing_its_heartbeat(background_worker, worker_settings):
    worker_settings("background", min_batch_size=10, max_batch_size=10, max_time_in_buffer=0.6)
    background_worker.refresh()
    publish_event_job()
    first = last_seen(background_worker._heartbeat.pid)
    assert background_worker.process_batch() == 1  # waited max_time_in_buffer for 9 more
    assert last_seen(background_worker._heartbeat.pid) - first >= 0.4


def test_the_console_selector_tells_running_silent_and_hung_workers(db, settings):
    settings.WORKER_HANG_SECONDS = 60.0
    now = timezone.now()
    for pid, seconds_ago, stopped in ((1, 1, False), (2, 20, False), (3, 120, False), (4, 7200, False), (5, 1, True)):
        seen = now - timedelta(seconds=seconds_ago)
        WorkerHeartbeat.objects.create(
            worker_type="background", host="h", pid=pid, started_at=seen, last_seen=seen, stopped=stopped
        )
    states = {row.pid: health.state for row, health in listed_workers()}
    assert states == {1: WorkerState.RUNNING, 2: WorkerState.SILENT, 3: WorkerState.HUNG}
