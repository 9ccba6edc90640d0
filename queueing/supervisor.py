"""The local supervisor (`manage.py run_workers`): what the Helm chart does on Kubernetes.

It keeps, for each worker type, as many `run_worker` processes as worker.<type>.replicas
says while worker.<type>.enabled is on; restarts crashed ones with a growing delay;
stops extra ones with SIGTERM so they finish their batch.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from queueing.models import WorkerSettings
from queueing.worker import WORKER_CLASSES

logger = logging.getLogger(__name__)

MAX_RESTART_DELAY = 30.0
HEALTHY_AFTER_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0


@dataclass
class TypeState:
    running: list[subprocess.Popen] = field(default_factory=list)
    stopping: list[subprocess.Popen] = field(default_factory=list)
    started: dict[int, float] = field(default_factory=dict)
    crashes: int = 0
    not_before: float = 0.0


class Supervisor:
    def __init__(self, *, poll_seconds: float = 1.0) -> None:
        self.poll_seconds = poll_seconds
        self.stopping = False
        self.state = {worker_type: TypeState() for worker_type in WORKER_CLASSES}
        self.manage_py = str(Path(settings.BASE_DIR) / "manage.py")

    def desired(self) -> dict[str, int]:
        rows = {row.worker_type: row for row in WorkerSettings.objects.all()}
        return {t: (rows[t].replicas if t in rows and rows[t].enabled else 0) for t in WORKER_CLASSES}

    def spawn(self, worker_type: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, self.manage_py, "run_worker", worker_type])
        self.state[worker_type].started[process.pid] = time.monotonic()
        logger.info("Started %s worker, pid %d", worker_type, process.pid)
        return process

    def step(self, desired: dict[str, int]) -> None:
        now = time.monotonic()
        for worker_type, state in self.state.items():
            for process in [p for p in state.stopping if p.poll() is not None]:
                state.stopping.remove(process)
                logger.info("%s worker pid %d stopped (exit %s)", worker_type, process.pid, process.returncode)
            for process in [p for p in state.running if p.poll() is not None]:
                state.running.remove(process)
                lived = now - state.started.pop(process.pid, now)
                state.crashes = 1 if lived >= HEALTHY_AFTER_SECONDS else state.crashes + 1
                delay = min(MAX_RESTART_DELAY, 2.0 ** (state.crashes - 1))
                state.not_before = now + delay
                logger.error(
                    "%s worker pid %d exited with %s after %.1fs; restarting in %.0fs",
                    worker_type, process.pid, process.returncode, lived, delay,
                )  # fmt: skip
            want = desired.get(worker_type, 0)
            while len(state.running) > want:
                process = state.running.pop()
                state.started.pop(process.pid, None)
                process.terminate()
                state.stopping.append(process)
                logger.info("Stopping %s worker pid %d (replicas now %d)", worker_type, process.pid, want)
            while len(state.running) < want and now >= state.not_before:
                state.running.append(self.spawn(worker_type))

    def request_stop(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        desired: dict[str, int] = {}
        logger.info("Supervisor started (pid %d)", os.getpid())
        try:
            while not self.stopping:
                try:
                    desired = self.desired()
                except DatabaseError:
                    logger.exception("Could not read the worker settings; keeping the current processes")
                close_old_connections()
                self.step(desired)
                time.sleep(self.poll_seconds)
        finally:
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
