"""Ships log records to the console's log table without slowing the process that logs.

`ShippingHandler` is the standard library's `logging.handlers.QueueHandler` with a bounded
queue and a thread of its own that writes the queue to the database in batches:

- QueueHandler does the part that must happen in the caller's thread, and does it the
  standard way: `prepare()` formats the record (the `tracardi` format, the line stdout
  gets) and drops what cannot cross threads safely (args, exc_info). Only `enqueue` is
  ours: on a full buffer it drops the record and counts it, where QueueHandler would
  print a traceback for every record (handleError), which under load is the very
  slowdown this must not cause.
- The buffer is a `queue.SimpleQueue` whose size `enqueue` checks, not a bounded
  `queue.Queue`: Queue.put takes a lock that is not reentrant, and a worker logs from its
  SIGTERM handler ("Received SIGTERM ..."), which can interrupt a log call holding that
  lock: the process then deadlocks on its own lock (the benchmark hit it). SimpleQueue's
  put is reentrant, documented as safe from signal handlers. Its size check and put are
  two steps, so concurrent threads may overfill it by a record or two: harmless.
- QueueListener is not used: it hands records one at a time to handlers from a blocking
  `get()` with no timeout, so it can neither batch nor flush "every second".
  `_run` below is the few lines of a listener that can: it waits for the first record of
  a batch with a timeout and writes FLUSH_RECORDS records or what came in FLUSH_SECONDS.

Nothing here can block or crash the process that logs: `emit` never waits (a full buffer
drops), the writes happen on the thread, and a store that fails (a missing table, a
database that is down or locked) costs that batch, counted as dropped, and is retried
with the next one. The count is saved to the database when it can be (LogDrops, shown on
the log page) and written to stderr once per DROP_REPORT_SECONDS.

The handler is in settings.LOGGING for every process but ships nothing until the process
says what it is with `start_shipping` (run_worker, run_workers, the WSGI application), so
`manage.py migrate`, a shell or the tests write no log rows. This module imports no
models: it is loaded while logging is configured, before the apps are.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import queue
import socket
import sys
import threading
import time
from datetime import UTC, datetime

# SQLite has one writer at a time (the project's write lock): a modest batch once a second
# keeps the log's share of that lock small. 200 records of a busy DEBUG worker per second.
FLUSH_SECONDS = 1.0
FLUSH_RECORDS = 200
# About 10 s of a very chatty process; beyond that the store is not keeping up, and
# dropping is better than holding the memory of a backlog.
BUFFER_RECORDS = 10_000
DROP_REPORT_SECONDS = 60.0
# How long closing (at exit) waits for the last records to be written.
CLOSE_TIMEOUT_SECONDS = 2.0

# Put in the queue by close() to wake the writer at once rather than after its timeout.
_WAKE = logging.makeLogRecord({"msg": "wake up: closing"})


class ShippingHandler(logging.handlers.QueueHandler):
    def __init__(
        self,
        *,
        enabled: bool = True,
        capacity: int = BUFFER_RECORDS,
        flush_records: int = FLUSH_RECORDS,
        flush_seconds: float = FLUSH_SECONDS,
        using: str = "default",
    ) -> None:
        super().__init__(queue.SimpleQueue())
        self.enabled = enabled
        self.capacity = capacity
        self.flush_records = flush_records
        self.flush_seconds = flush_seconds
        self.using = using
        self.host = socket.gethostname()
        self.worker_type: str | None = None  # None: not shipping (see start_shipping)
        self.started_at = datetime.now(UTC)
        # What happened so far, for the log page, the tests and the benchmark.
        self.written = 0
        self.batches = 0
        self.dropped = 0
        self.last_error = ""
        self._saved_drops = 0
        # Reentrant: a signal handler that logs may interrupt the holder (see the docstring).
        self._drops_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_ident: int | None = None
        self._owner_pid: int | None = None

    # --- in the thread that logs ---------------------------------------------------------

    def start(self, worker_type: str, *, level: int = logging.NOTSET, run_thread: bool = True) -> None:
        """Ships from now on, as `worker_type`, records at `level` and above (NOTSET: what the
        loggers let through, i.e. the worker's logging_level). `run_thread=False` only
        buffers (the tests start the thread later with start_thread)."""
        if not self.enabled:
            return
        self.setLevel(level)
        self.worker_type = worker_type
        if run_thread:
            self.start_thread()

    def start_thread(self) -> None:
        self._owner_pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="log-shipping", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        if self.worker_type is None or threading.get_ident() == self._thread_ident:
            # Not shipping; or a record of the writer itself (the SQL of the write, with
            # DEBUG on): shipping it would make a write, which logs, which ships...
            return
        if self._owner_pid is not None and self._owner_pid != os.getpid():
            self._after_fork()
        super().emit(record)

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.queue.qsize() >= self.capacity:
            self._count_drops(1, "the buffer is full (the log store is not keeping up)")
        else:
            self.queue.put_nowait(record)

    def _after_fork(self) -> None:
        """A forked child (gunicorn --preload) has the parent's queue but not its thread."""
        self.queue = queue.SimpleQueue()
        self.started_at = datetime.now(UTC)
        self.written = self.batches = self.dropped = self._saved_drops = 0
        self.start_thread()

    def close(self) -> None:
        """At exit (logging.shutdown): writes what is buffered, waiting at most
        CLOSE_TIMEOUT_SECONDS, so a broken store never holds the process up."""
        thread = self._thread
        if thread is not None and thread.is_alive() and self._owner_pid == os.getpid():
            self._stop.set()
            self.queue.put_nowait(_WAKE)
            thread.join(CLOSE_TIMEOUT_SECONDS)
        super().close()

    # --- in the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        self._thread_ident = threading.get_ident()
        next_report = 0.0
        reported = 0
        try:
            while True:
                batch = self._collect()
                if batch:
                    self._write(batch)
                self._save_drops()
                if self.dropped > reported and time.monotonic() >= next_report:
                    self._report_drops(self.dropped - reported)
                    reported = self.dropped
                    next_report = time.monotonic() + DROP_REPORT_SECONDS
                if self._stop.is_set() and self.queue.empty():
                    return
        finally:
            self._close_connection()  # this thread's own connection; nobody else would close it

    def _collect(self) -> list[logging.LogRecord]:
        """Up to flush_records records, waiting at most flush_seconds after the first."""
        batch: list[logging.LogRecord] = []
        deadline = time.monotonic() + self.flush_seconds
        while len(batch) < self.flush_records:
            remaining = deadline - time.monotonic()
            if self._stop.is_set():
                remaining = 0.0  # closing: take what is there and write it now
            try:
                record = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if record is not _WAKE:
                batch.append(record)
        return batch

    def _write(self, batch: list[logging.LogRecord]) -> None:
        from django.db import connections

        from console.logs.services import write_lines

        try:
            write_lines(batch, worker_type=self.worker_type or "", host=self.host, using=self.using)
        except Exception as exc:  # any failure of the store: the records are lost, the process is not
            self._count_drops(len(batch), f"the log store failed: {type(exc).__name__}: {exc}")
            self._close_connection()
            return
        self.written += len(batch)
        self.batches += 1
        try:
            connections[self.using].close_if_unusable_or_obsolete()  # as Django does after a request
        except Exception:
            self._close_connection()

    def _save_drops(self) -> None:
        if self.dropped == self._saved_drops:
            return
        from console.logs.services import save_drops

        dropped = self.dropped
        try:
            save_drops(
                worker_type=self.worker_type or "",
                host=self.host,
                pid=os.getpid(),
                started_at=self.started_at,
                dropped=dropped,
                using=self.using,
            )
        except Exception:  # the store is still failing: the next round tries again
            self._close_connection()
            return
        self._saved_drops = dropped

    def _close_connection(self) -> None:
        from django.db import connections

        with contextlib.suppress(Exception):  # a connection that cannot even close is gone anyway
            connections[self.using].close()

    def _count_drops(self, count: int, reason: str) -> None:
        with self._drops_lock:
            self.dropped += count
            self.last_error = reason

    def _report_drops(self, count: int) -> None:
        """Straight to stderr in the reference format, not through logging: the record would
        come back to this handler, and the store is what is failing."""
        now = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        line = (
            f"{now}: WARNING: Log shipping dropped {count} record(s) ({self.dropped} since start); last reason: "
            f"{self.last_error}: (console.logs.handler:handler.py)\n"
        )
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except Exception:  # stderr closed: nothing more to tell anyone
            pass


def shipping_handler() -> ShippingHandler | None:
    """The shipping handler settings.LOGGING put on the root logger, if any."""
    return next((h for h in logging.getLogger().handlers if isinstance(h, ShippingHandler)), None)


def start_shipping(worker_type: str, *, level: int = logging.NOTSET) -> ShippingHandler | None:
    """Called once by a process that ships its logs: run_worker (its type), run_workers
    ("supervisor"), the WSGI application ("api", WARNING and above)."""
    handler = shipping_handler()
    if handler is not None:
        handler.start(worker_type, level=level)
    return handler
