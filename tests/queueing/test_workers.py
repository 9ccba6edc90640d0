"""Worker processes: graceful stop, heartbeats, live logging level, batching, the supervisor."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from queueing.broker import ReceivedMessage
from queueing.models import QueueMessage, WorkerHeartbeat, WorkerSettings
from queueing.topics import FUNCTIONS
from queueing.worker import already_waited, format_duration
from tests.helpers import wait_for
from tests.support.jobs import publish_event_job
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def test_duration_format_matches_the_reference_log():
    assert format_duration(0.075) == "00:00.075"
    assert format_duration(65.5) == "01:05.500"


def test_sigterm_finishes_the_batch_and_exits_0_with_a_stopped_heartbeat(spawn, worker_settings):
    worker_settings("background")
    worker = spawn("run_worker", "background")
    wait_for(lambda: WorkerHeartbeat.objects.filter(pid=worker.pid).exists(), timeout=20)
    publish_event_job()
    wait_for(lambda: "Events: Saved 1" in worker.output(), timeout=20)
    assert worker.stop() == 0
    beat = WorkerHeartbeat.objects.get(pid=worker.pid)
    assert beat.stopped and beat.processed == 1 and beat.worker_type == "background"
    assert "Received SIGTERM; finishing the current batch" in worker.output()


def test_a_running_worker_picks_up_a_new_logging_level_within_5_seconds(spawn, worker_settings):
    worker_settings("background", logging_level="INFO")
    worker = spawn("run_worker", "background")
    wait_for(lambda: WorkerHeartbeat.objects.filter(pid=worker.pid).exists(), timeout=20)
    publish_event_job()
    wait_for(lambda: "Events: Saved 1" in worker.output(), timeout=20)
    assert "Invoked" not in worker.output()
    WorkerSettings.objects.filter(worker_type="background").update(logging_level="DEBUG")
    changed_at = time.monotonic()
    jobs: list[tuple[float, float]] = []  # (published at, seconds until stored) of each job

    def a_job_logs_at_debug() -> bool:
        """One more job, stored before the next: the first batch after the refresh logs the line."""
        stored = worker.output().count("Events: Saved 1")
        published = time.monotonic()
        publish_event_job()
        wait_for(lambda: worker.output().count("Events: Saved 1") > stored, timeout=10, message="the job stored")
        jobs.append((published, time.monotonic() - published))
        # The line comes after the batch's "Saved" lines: a second for it, before the next job.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if "DEBUG: Invoked storage.workers.background.store_bulk_jobs" in worker.output():
                return True
            time.sleep(0.05)
        return False

    wait_for(a_job_logs_at_debug, timeout=30, interval=0.2, message="the DEBUG Invoked line")
    # The first job published once the new level applies logs the line: within 5 s, plus one
    # job and the second this test gives each job's line.
    assert jobs[-1][0] - changed_at <= 5.0 + max(seconds for _, seconds in jobs) + 1.0 + 0.2


def test_the_bulker_waits_for_min_batch_size_or_max_time_in_buffer(worker_settings):
    from storage.workers.background import BackgroundWorker

    worker_settings("background", min_batch_size=3, max_batch_size=4, max_time_in_buffer=0.3)
    worker = BackgroundWorker()
    for _ in range(5):
        publish_event_job()
    assert worker.process_batch() == 4  # capped at max_batch_size
    assert worker.process_batch() == 1
    started = time.monotonic()
    publish_event_job()
    assert worker.process_batch() == 1  # below min_batch_size: waits max_time_in_buffer, then goes
    assert time.monotonic() - started >= 0.3
    worker.consumer.close()


def batch_within_a_minute(worker) -> list[int]:
    """Runs one process_batch, with max_time_in_buffer an hour: [its count] if it returned
    within a minute, [] if it waited (then stopped, so the test ends)."""
    done: list[int] = []
    batch = threading.Thread(target=lambda: done.append(worker.process_batch()), daemon=True)
    batch.start()
    batch.join(timeout=60)
    within = list(done)
    worker.stopping = True  # ends a wait that should not have been
    batch.join(timeout=10)
    worker.consumer.close()
    return within


def test_a_message_that_waited_in_the_queue_is_not_held_for_max_time_in_buffer_again(worker_settings):
    from storage.workers.background import BackgroundWorker

    worker_settings("background", min_batch_size=100, max_time_in_buffer=3600)
    worker = BackgroundWorker()
    publish_event_job()
    # Published an hour ago, as if it had queued behind a long batch (or a stopped worker).
    QueueMessage.objects.update(published_at=timezone.now() - timedelta(hours=1))
    assert batch_within_a_minute(worker) == [1]  # counted from this receive, it would wait an hour


def test_a_minimum_above_the_maximum_waits_for_a_full_batch_only(worker_settings):
    from storage.workers.background import BackgroundWorker

    # The form refuses this; a row written around it must not wait for more than a batch holds.
    worker_settings("background", min_batch_size=1000, max_batch_size=3, max_time_in_buffer=3600)
    worker = BackgroundWorker()
    for _ in range(3):
        publish_event_job()
    assert batch_within_a_minute(worker) == [3]


def message(published_at: float) -> ReceivedMessage:
    return ReceivedMessage(id=1, topic=FUNCTIONS, partition=0, key="k", payload={}, redelivery_count=0,
                           published_at=published_at)  # fmt: skip


def test_already_waited_counts_from_the_oldest_publish_and_is_bounded(monkeypatch):
    now = 1_800_000_000.0
    monkeypatch.setattr("queueing.worker.time.time", lambda: now)
    assert already_waited([message(now - 0.2), message(now - 0.1)], 1.0) == pytest.approx(0.2)
    assert already_waited([message(now - 600)], 0.25) == 0.25  # waited longer than the buffer: go
    assert already_waited([message(now + 60)], 0.25) == 0.0  # the publisher's clock is ahead
    assert already_waited([message(0.0)], 0.25) == 0.0  # unknown: counts from the receive


def test_the_supervisor_keeps_the_replicas_running_and_restarts_crashed_ones(spawn, worker_settings):
    worker_settings("background", enabled=True, replicas=2)
    worker_settings("collector", enabled=False)
    supervisor = spawn("run_workers", env={"OUTBOX_RUN_CLUSTER": "false"})

    def live_pids() -> set[int]:
        return set(
            WorkerHeartbeat.objects.filter(worker_type="background", stopped=False).values_list("pid", flat=True)
        )

    first = wait_for(lambda: (pids := live_pids()) and len(pids) == 2 and pids, timeout=90, message="2 replicas")
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(live_pids() - {victim} - first) == 1, timeout=90, message="a replacement worker")
    assert f"background worker pid {victim} exited with -9" in supervisor.output()

    WorkerSettings.objects.filter(worker_type="background").update(replicas=1)
    wait_for(lambda: "replicas now 1" in supervisor.output(), timeout=10)
    wait_for(lambda: len(live_pids() - {victim}) == 1, timeout=90, message="scaled down to 1")

    WorkerSettings.objects.filter(worker_type="collector").update(enabled=True, replicas=1)
    wait_for(lambda: WorkerHeartbeat.objects.filter(worker_type="collector", stopped=False).exists(), timeout=90)
    assert supervisor.stop() == 0
    assert not WorkerHeartbeat.objects.filter(stopped=False).exclude(pid=victim).exists()


def test_the_supervisor_kills_and_replaces_a_worker_whose_heartbeat_went_silent(spawn, worker_settings):
    worker_settings("background", enabled=True, replicas=1)
    worker_settings("collector", enabled=False)
    supervisor = spawn("run_workers", env={"WORKER_HANG_SECONDS": "6", "OUTBOX_RUN_CLUSTER": "false"})

    def live_pids() -> set[int]:
        return set(WorkerHeartbeat.objects.filter(worker_type="background").values_list("pid", flat=True))

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:  # killed and reaped by the supervisor
            return True
        return False

    (victim,) = wait_for(live_pids, timeout=90, message="the background worker's first heartbeat")
    os.kill(victim, signal.SIGSTOP)  # alive, but silent: what SIGTERM could not stop
    try:
        wait_for(lambda: gone(victim) and live_pids() - {victim}, timeout=90, message="a replacement worker")
    finally:
        if not gone(victim):
            os.kill(victim, signal.SIGCONT)
    output = supervisor.output()
    assert f"background worker pid {victim} hung: heartbeat silent for " in output
    assert "(limit 6s); killed it with SIGKILL, restarting in 1s" in output
    assert supervisor.stop() == 0


def gunicorn_processes(supervisor_pid: int) -> tuple[int | None, set[int]]:
    """(the gunicorn master the supervisor started, that master's workers)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if b"gunicorn" not in cmdline.read():
                    continue
            with open(f"/proc/{entry}/stat") as stat:
                parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
        except OSError:  # exited while listed
            continue
    master = next((pid for pid, parent in parents.items() if parent == supervisor_pid), None)
    return master, {pid for pid, parent in parents.items() if master is not None and parent == master}


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan killed and not yet reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_gunicorn_master_takes_its_workers_along_and_a_new_one_serves(spawn, worker_settings):
    """SIGKILL leaves gunicorn's workers orphaned, holding the port; the supervisor kills its
    process group, so a new master binds at once, and no request meets a 500 meanwhile."""
    worker_settings("background", enabled=False)
    worker_settings("collector", enabled=False)
    url = f"http://127.0.0.1:{free_port()}"
    supervisor = spawn("run_workers", "--web", url.removeprefix("http://"), env={"OUTBOX_RUN_CLUSTER": "false"})

    def health() -> int | None:
        try:
            return requests.get(f"{url}/healthz", timeout=5).status_code
        except requests.RequestException:
            return None

    wait_for(lambda: health() == 200, timeout=60, message=f"gunicorn under run_workers; log: {supervisor.log}")
    master, workers = wait_for(
        lambda: (found := gunicorn_processes(supervisor.pid))[0] and found[1] and found,
        timeout=30,
        message="the gunicorn master and its workers",
    )
    os.kill(master, signal.SIGKILL)
    answers: list[int | None] = []

    def served_by_a_new_master() -> bool:
        answers.append(health())
        new_master, _ = gunicorn_processes(supervisor.pid)
        return answers[-1] == 200 and new_master not in (None, master)

    wait_for(served_by_a_new_master, timeout=60, message=f"a new gunicorn master; log: {supervisor.log}")
    assert not [pid for pid in workers if running(pid)], "orphaned gunicorn workers left"
    assert 500 not in answers
    assert f"Killed the orphaned gunicorn workers of master pid {master}" in supervisor.output()
    assert supervisor.stop() == 0
