"""The local supervisor (`manage.py run_workers`): what the Helm chart does on Kubernetes.

It keeps, for each worker type, as many `run_worker` processes as worker.<type>.replicas
says while worker.<type>.enabled is on; restarts crashed ones with a growing delay;
stops extra ones with SIGTERM so they finish their batch. A worker that is alive but
whose heartbeat has been silent past WORKER_HANG_SECONDS (stopped, or stuck in a call)
is killed with SIGKILL, which reaches a stopped process where SIGTERM would wait, and
restarted like a crashed one.

With OUTBOX_RUN_CLUSTER on (the default) it also keeps one `manage.py qcluster`, the
django-q2 cluster that sends the outbox's deliveries, restarted like a crashed worker and
stopped with the workers. It writes no heartbeats, so it is not judged hung: django-q2's
own guard replaces its stuck task workers (Q_CLUSTER timeout).

Given `web_command` (`run_workers --web HOST:PORT`, what `make run` uses), it also keeps
one gunicorn serving the API, restarted like a crashed worker and stopped with the
workers (SIGTERM: it answers the requests in flight first), so the whole local pipeline
has one supervisor, this one, and devtools/run.sh only starts it. gunicorn writes no
heartbeats either: its master replaces its own hung workers (--timeout). It runs in a
process group of its own: when its master dies without stopping them (SIGKILL, OOM
killer), the orphaned gunicorn workers are killed with the group before a new master
starts; they would hold the port (the new master could not bind until they noticed) and
serve with the metrics directory that the new master removes as a dead master's.

It also runs the console's backlog sampler in a thread (see queueing/sampling.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from queueing.health import HangPolicy, Health, WorkerState
from queueing.models import WorkerHeartbeat, WorkerSettings
from queueing.sampling import SamplerThread
from queueing.worker import WORKER_CLASSES

logger = logging.getLogger(__name__)

MAX_RESTART_DELAY = 30.0
HEALTHY_AFTER_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0
# A killed process is gone at once, unless stuck in the kernel (D state, a dead NFS mount).
KILL_WAIT_SECONDS = 5.0
# Supervised like a worker type, but not one: django-q2's cluster (the outbox's sender).
CLUSTER = "qcluster"
# Supervised like a worker type too: gunicorn serving the API, when asked for.
WEB = "web"
# Processes that write no heartbeats, so are never judged hung here.
NO_HEARTBEAT = {CLUSTER, WEB}


@dataclass
class TypeState:
    running: list[subprocess.Popen] = field(default_factory=list)
    stopping: list[subprocess.Popen] = field(default_factory=list)
    started: dict[int, float] = field(default_factory=dict)
    # Epoch seconds, comparable with the heartbeats the workers write.
    spawned_at: dict[int, float] = field(default_factory=dict)
    crashes: int = 0
    not_before: float = 0.0


class Supervisor:
    def __init__(
        self, *, poll_seconds: float = 1.0, policy: HangPolicy | None = None, web_command: list[str] | None = None
    ) -> None:
        self.poll_seconds = poll_seconds
        self.policy = policy or HangPolicy.from_settings()
        self.stopping = False
        self.state = {worker_type: TypeState() for worker_type in WORKER_CLASSES}
        if settings.OUTBOX_RUN_CLUSTER:
            self.state[CLUSTER] = TypeState()
        self.web_command = web_command
        if web_command:
            self.state[WEB] = TypeState()
        self.manage_py = str(Path(settings.BASE_DIR) / "manage.py")
        self.host = socket.gethostname()
        # Since when the heartbeats could be read without a break (None: the last read failed).
        # Silence before that is not held against a worker: while the database was down, its
        # heartbeats could not be written either.
        self.observed_since: float | None = None

    def desired(self) -> dict[str, int]:
        rows = {row.worker_type: row for row in WorkerSettings.objects.all()}
        desired = {t: (rows[t].replicas if t in rows and rows[t].enabled else 0) for t in WORKER_CLASSES}
        desired.update({always: 1 for always in NO_HEARTBEAT if always in self.state})
        return desired

    def heartbeats(self) -> dict[int, float]:
        """The last heartbeat (epoch seconds) of each running worker that has written one.
        Rows of an earlier process with the same pid started before it and are left out."""
        spawned = {pid: at for s in self.state.values() for pid, at in s.spawned_at.items()}
        rows = WorkerHeartbeat.objects.filter(host=self.host, pid__in=list(spawned), stopped=False)
        return {
            pid: last_seen.timestamp()
            for pid, started_at, last_seen in rows.values_list("pid", "started_at", "last_seen").order_by("last_seen")
            if started_at.timestamp() >= spawned[pid]
        }

    def judge(self, *, spawned: float, last_seen: float | None, now: float) -> Health:
        """The health of one worker process, not counting silence the supervisor could not see."""
        if self.observed_since is not None:
            spawned = max(spawned, self.observed_since)
            last_seen = None if last_seen is None else max(last_seen, self.observed_since)
        return self.policy.health(started=spawned, last_seen=last_seen, now=now)

    def spawn(self, worker_type: str) -> subprocess.Popen:
        spawned_at = time.time()
        if worker_type == WEB:
            command = self.web_command
        elif worker_type == CLUSTER:
            command = [sys.executable, self.manage_py, "qcluster"]
        else:
            command = [sys.executable, self.manage_py, "run_worker", worker_type]
        # gunicorn leads a process group: its workers can be found (and killed) if it dies.
        process = subprocess.Popen(command, process_group=0 if worker_type == WEB else None)
        self.state[worker_type].started[process.pid] = time.monotonic()
        self.state[worker_type].spawned_at[process.pid] = spawned_at
        logger.info("Started %s worker, pid %d", worker_type, process.pid)
        return process

    def step(self, desired: dict[str, int], beats: dict[int, float] | None = None) -> None:
        """`beats`: the workers' last heartbeats (see heartbeats()); None if they could not be
        read, and then no worker is judged hung."""
        now = time.monotonic()
        for worker_type, state in self.state.items():
            for process in [p for p in state.stopping if p.poll() is not None]:
                state.stopping.remove(process)
                logger.info("%s worker pid %d stopped (exit %s)", worker_type, process.pid, process.returncode)
            for process in [p for p in state.running if p.poll() is not None]:
                state.running.remove(process)
                lived = now - state.started.get(process.pid, now)
                delay = self.back_off(state, process.pid, now)
                logger.error(
                    "%s worker pid %d exited with %s after %.1fs; restarting in %.0fs",
                    worker_type, process.pid, process.returncode, lived, delay,
                )  # fmt: skip
                if worker_type == WEB:
                    self.kill_orphans(process.pid)
            if beats is not None and worker_type not in NO_HEARTBEAT:
                self.replace_hung(worker_type, state, beats, now)
            want = desired.get(worker_type, 0)
            while len(state.running) > want:
                process = state.running.pop()
                state.started.pop(process.pid, None)
                state.spawned_at.pop(process.pid, None)
                process.terminate()
                state.stopping.append(process)
                logger.info("Stopping %s worker pid %d (replicas now %d)", worker_type, process.pid, want)
            while len(state.running) < want and now >= state.not_before:
                state.running.append(self.spawn(worker_type))

    @staticmethod
    def kill_orphans(group: int) -> None:
        """SIGKILL to what is left of a dead gunicorn master's process group: its workers."""
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:  # the workers had already exited with it
            return
        logger.error("Killed the orphaned gunicorn workers of master pid %d (process group %d)", group, group)

    def back_off(self, state: TypeState, pid: int, now: float) -> float:
        """Forgets a failed process; a type whose workers keep failing soon is restarted slower."""
        lived = now - state.started.pop(pid, now)
        state.spawned_at.pop(pid, None)
        state.crashes = 1 if lived >= HEALTHY_AFTER_SECONDS else state.crashes + 1
        delay = min(MAX_RESTART_DELAY, 2.0 ** (state.crashes - 1))
        state.not_before = now + delay
        return delay

    def replace_hung(self, worker_type: str, state: TypeState, beats: dict[int, float], now: float) -> None:
        wall = time.time()
        for process in list(state.running):
            health = self.judge(spawned=state.spawned_at[process.pid], last_seen=beats.get(process.pid), now=wall)
            if health.state is not WorkerState.HUNG:
                continue
            process.kill()
            state.running.remove(process)
            try:
                process.wait(timeout=KILL_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                state.stopping.append(process)  # reaped once the kernel lets it go
            first = process.pid not in beats
            delay = self.back_off(state, process.pid, now)
            logger.error(
                "%s worker pid %d hung: %s for %.0fs (limit %.0fs); killed it with SIGKILL, restarting in %.0fs",
                worker_type, process.pid, "no first heartbeat" if first else "heartbeat silent",
                health.silent_seconds, self.policy.grace_seconds if first else self.policy.hang_seconds, delay,
            )  # fmt: skip

    def request_stop(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        desired: dict[str, int] = {}
        logger.info(
            "Supervisor started (pid %d); a worker silent for %.0fs is replaced", os.getpid(), self.policy.hang_seconds
        )
        sampler = SamplerThread()
        sampler.start()
        try:
            while not self.stopping:
                beats: dict[int, float] | None = None
                try:
                    desired = self.desired()
                    beats = self.heartbeats()
                    if self.observed_since is None:
                        self.observed_since = time.time()
                except DatabaseError:
                    logger.exception("Could not read the worker settings or heartbeats; keeping the current processes")
                    self.observed_since = None
                close_old_connections()
                self.step(desired, beats)
                time.sleep(self.poll_seconds)
        finally:
            sampler.stop()
            self.shutdown()

    def shutdown(self) -> None:
        processes = [p for s in self.state.values() for p in s.running + s.stopping]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("Worker pid %d did not stop in %.0fs; killing it", process.pid, STOP_TIMEOUT_SECONDS)
                process.kill()
                process.wait()
        logger.info("Supervisor stopped")
