"""The worker loop shared by every worker type (docs/architecture.md, section 3).

A worker consumes one topic in batches, hands a batch to `handle`, acknowledges what
succeeded and negatively acknowledges what failed. Signals only set a flag: the batch
in hand is finished and settled before the process exits 0.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.utils import timezone

from queueing import faults, telemetry
from queueing.broker import Broker, BrokerUnavailable, ReceivedMessage, get_broker
from queueing.models import DEFAULT_ENABLED, WorkerHeartbeat, WorkerSettings
from queueing.topics import Topic

log = logging.getLogger(__name__)
invoker_log = logging.getLogger("queueing.invokers")

P = ParamSpec("P")
R = TypeVar("R")

SETTINGS_REFRESH_SECONDS = 2.0
MAX_RETRY_DELAY = 30.0
IDLE_RECEIVE_SECONDS = 0.5


def format_duration(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:06.3f}"


def invoked(func: Callable[P, R]) -> Callable[P, R]:
    """Logs `Invoked <dotted.name>. Finished in 00:00.075` at DEBUG, as the reference workers do."""
    name = f"{func.__module__}.{func.__qualname__}"

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            if invoker_log.isEnabledFor(logging.DEBUG):
                invoker_log.debug("Invoked %s. Finished in %s", name, format_duration(time.perf_counter() - started))

    return wrapper


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc, which the interpreter is linked against
    except (OSError, AttributeError, TypeError):  # musl and macOS have no malloc_trim; Windows no CDLL(None)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


MALLOC_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Gives the memory freed by the last batch back to the system (glibc's malloc_trim).

    A batch's decoded messages, profiles and bulk requests are freed when it is settled,
    but glibc keeps freed chunks in its heaps (most of them between live ones, where its
    own trimming never looks), so a worker's RSS stayed at the high-water mark of its
    largest batch, a burst's full batches of profiles with full windows of applied ids.
    bench/half_load.py on Pulsar + Elasticsearch at 300 requests/s, after a burst of about
    1,000: the background worker's peak RSS 163 MiB without, 138 MiB with. A call takes
    about 1 ms (9 ms when there are a hundred MiB to hand back), once per batch."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


def get_worker_settings(worker_type: str) -> WorkerSettings:
    settings_row, _ = WorkerSettings.objects.get_or_create(
        worker_type=worker_type, defaults={"enabled": DEFAULT_ENABLED.get(worker_type, False)}
    )
    return settings_row


def already_waited(batch: Sequence[ReceivedMessage], limit: float) -> float:
    """How long the oldest message of `batch` has waited since it was published, at most
    `limit`. Messages that queued while the worker processed its last batch have waited
    already: they go in the next batch at once, so under a steady load an event waits for
    max_time_in_buffer only when the stage was idle, not once more after each batch. A
    publisher's clock ahead of ours counts as no wait; one behind, as at most `limit` (one
    behind by more than max_time_in_buffer sends every batch at once, below
    min_batch_size: keep the hosts' clocks in sync, as NTP does)."""
    published = [m.published_at for m in batch if m.published_at]
    if not published:
        return 0.0
    return min(max(time.time() - min(published), 0.0), limit)


class Worker:
    worker_type: str
    topic: Topic
    # Errors that mean a backend is down, not that the messages are bad.
    transient_errors: tuple[type[Exception], ...] = (DatabaseError, BrokerUnavailable)

    def __init__(self, *, broker: Broker | None = None) -> None:
        self.stopping = False
        self.broker = broker or get_broker()
        self.processed = 0
        self.host = socket.gethostname()
        self.consumer = self.broker.subscribe(
            topic=self.topic, consumer_name=f"{self.worker_type}@{self.host}:{os.getpid()}"
        )
        self.config = get_worker_settings(self.worker_type)
        self._heartbeat: WorkerHeartbeat | None = None
        self.last_batch_at: datetime | None = None
        self._next_refresh = 0.0
        self._next_beat = 0.0

    def handle(self, messages: Sequence[ReceivedMessage]) -> dict[int | str, str]:
        """Processes a batch; returns {message id: error} for the messages that failed."""
        raise NotImplementedError

    # --- one step ---------------------------------------------------------------------

    def collect(self) -> list[ReceivedMessage]:
        """Waits for up to max_batch_size messages: until min_batch_size are in, or the first
        has waited max_time_in_buffer seconds since it was published. Returns [] soon when
        nothing arrives."""
        config = self.config
        batch = self.consumer.receive(max_messages=config.max_batch_size, timeout=IDLE_RECEIVE_SECONDS)
        if not batch:
            return []
        first_arrived = time.monotonic() - already_waited(batch, config.max_time_in_buffer)
        # The form refuses a minimum above the maximum; a row written around it must not spin.
        minimum = min(config.min_batch_size, config.max_batch_size)
        while len(batch) < minimum and not self.stopping:
            self.keep_alive()  # max_time_in_buffer may be far longer than the hang limit
            remaining = config.max_time_in_buffer - (time.monotonic() - first_arrived)
            if remaining <= 0:
                break
            batch += self.consumer.receive(
                max_messages=config.max_batch_size - len(batch), timeout=min(remaining, IDLE_RECEIVE_SECONDS)
            )
        return batch

    def process_batch(self) -> int:
        """Collects one batch, processes it, settles every message; returns how many there were."""
        batch = self.collect()
        if not batch:
            return 0
        started = time.perf_counter()
        failures = self.handle_until_available(batch)
        if failures is None:  # asked to stop while a backend was down: leave it to be redelivered
            self.consumer.redeliver_unacknowledged()
            return len(batch)
        faults.pause_at("before_ack")
        self.consumer.acknowledge([m for m in batch if m.id not in failures])
        by_error: dict[str, list[ReceivedMessage]] = {}
        for message in batch:
            if message.id in failures:
                by_error.setdefault(failures[message.id], []).append(message)
        for error, messages in by_error.items():
            log.warning("Negatively acknowledged %d message(s): %s", len(messages), error)
            self.consumer.negative_acknowledge(messages, error=error)
        telemetry.record_batch(
            self.worker_type,
            batch,
            [m for m in batch if m.id in failures],
            time.perf_counter() - started,
            settings.MAX_REDELIVERIES,
        )
        self.processed += len(batch)
        self.last_batch_at = timezone.now()
        return len(batch)

    def handle_until_available(self, batch: list[ReceivedMessage]) -> dict[int | str, str] | None:
        """A backend that is down is not the messages' fault: the batch is retried as a whole,
        with a growing delay, without using up redeliveries. None if told to stop meanwhile."""
        delay = 1.0
        while True:
            try:
                return self.handle_isolating(batch)
            except self.transient_errors as exc:
                log.error("%s; retrying the batch of %d in %.0fs", exc, len(batch), delay)
            if not self.sleep(delay):
                return None
            delay = min(delay * 2, MAX_RETRY_DELAY)

    def handle_isolating(self, batch: list[ReceivedMessage]) -> dict[int | str, str]:
        try:
            return self.handle(batch)
        except self.transient_errors:
            raise
        except Exception:
            # One bad message must not hold back a whole batch: retry each alone to find it.
            log.exception("Batch of %d failed; retrying its messages one by one", len(batch))
        failures: dict[int | str, str] = {}
        for message in batch:
            try:
                failures.update(self.handle([message]))
            except self.transient_errors:
                raise
            except Exception as exc:
                failures[message.id] = f"{type(exc).__name__}: {exc}"
        return failures

    def sleep(self, seconds: float) -> bool:
        """Sleeps unless asked to stop; False if it was."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            self.keep_alive()  # waiting for a backend is not hanging: the supervisor must see it
            time.sleep(min(0.1, deadline - time.monotonic()))
        return not self.stopping

    # --- the loop ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Between batches: re-reads the settings (logging level, bulker) and writes the
        heartbeat, each when due."""
        now = time.monotonic()
        if now >= self._next_refresh:
            self._next_refresh = now + SETTINGS_REFRESH_SECONDS
            self.config = get_worker_settings(self.worker_type)
            logging.getLogger().setLevel(self.config.logging_level)
        if now >= self._next_beat:
            self.beat()

    def keep_alive(self) -> None:
        """Writes the heartbeat if one is due, while waiting. A failed write is only logged: it
        must not cut short the wait for a backend that may be the database itself."""
        if time.monotonic() < self._next_beat:
            return
        try:
            self.beat()
        except DatabaseError as exc:
            log.warning("Could not write the heartbeat: %s", exc)

    def beat(self, *, stopped: bool = False) -> None:
        self._next_beat = time.monotonic() + settings.WORKER_HEARTBEAT_SECONDS
        now = timezone.now()
        if self._heartbeat is None:
            self._heartbeat = WorkerHeartbeat.objects.create(
                worker_type=self.worker_type, host=self.host, pid=os.getpid(), started_at=now, last_seen=now
            )
        self._heartbeat.last_seen = now
        self._heartbeat.processed = self.processed
        self._heartbeat.last_batch_at = self.last_batch_at
        self._heartbeat.stopped = stopped
        with transaction.atomic():
            self._heartbeat.save(update_fields=["last_seen", "processed", "last_batch_at", "stopped"])

    def request_stop(self, signum: int, _frame: object) -> None:
        log.info("Received %s; finishing the current batch", signal.Signals(signum).name)
        self.stopping = True

    @classmethod
    def start(cls) -> None:
        """Runs a worker process. The signal handlers go in before the worker connects and
        subscribes (seconds, on Pulsar): a stop asked for meanwhile is a clean exit, not a kill."""
        asked: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, _frame: asked.append(signum))
        worker = cls()
        # What starting made (Django, the settings, the broker and store clients) lives as long
        # as the process: frozen out of the collector. Each batch allocates a few hundred
        # thousand objects (decoded payloads, documents); without this every full collection
        # they trigger scans the whole startup heap again: in a profile of the background
        # worker draining Elasticsearch, the collector took about 20 % of its main thread.
        gc.collect()
        gc.freeze()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, worker.request_stop)
        worker.stopping = bool(asked)
        worker.run()

    def run(self) -> None:
        log.info("Worker %s started (pid %d, topic %s)", self.worker_type, os.getpid(), self.topic.url)
        try:
            while not self.stopping:
                try:
                    self.refresh()
                    if self.process_batch():
                        release_freed_memory()  # the batch was freed when process_batch returned
                except self.transient_errors:
                    # Fetching or settling failed: what was not acknowledged is delivered again,
                    # and the stores apply a redelivered message once.
                    log.exception("A backend is unavailable; retrying in 1s")
                    self.consumer.redeliver_unacknowledged()
                    self.sleep(1.0)
                close_old_connections()
        finally:
            self.consumer.close()
            self.broker.close()
            self.beat(stopped=True)
            log.info("Worker %s stopped after %d message(s)", self.worker_type, self.processed)


# Worker types and their classes (dotted paths: imported only when a worker of that type
# starts). Each app registers its own in AppConfig.ready(), so adding a worker type touches
# only its app (docs/architecture.md, section 5).
WORKER_CLASSES: dict[str, str] = {}


def register_worker(worker_type: str, dotted_class: str) -> None:
    WORKER_CLASSES[worker_type] = dotted_class
