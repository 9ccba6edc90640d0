"""Group commit: many threads' writes share one transaction, so one durable flush.

On the embedded default every /track publish is a SQLite transaction with
`synchronous=FULL`: a fsync each, and the one write lock held for it. The flush, not the
work, limits how many requests a second are accepted. Here a publishing thread hands its
rows to the process's committer thread and waits; the committer writes everything waiting
in one transaction and wakes each thread with the outcome. Nothing is answered before its
rows are committed, and if the transaction fails every request in it fails (and /track
answers 503 to each). The gain comes with concurrent requests in one process (gunicorn
`--threads`); with one request at a time it costs a thread hand-off.

Hand-written because it is a few lines around Django's own `transaction.atomic` and the
libraries of the field (Kafka's producer batching, PostgreSQL's commit_delay) live inside
their servers; bench/api_ratio.py measures it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import close_old_connections, connection, transaction

# Rows written by one transaction at most: a bound on the transaction's size and time.
MAX_GROUP_ROWS = 5000


@dataclass
class _Pending:
    rows: Sequence[Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupCommitter:
    """One committer thread per process and writer; started on first use."""

    def __init__(self, write: Callable[[list[Any]], None]) -> None:
        self._write = write
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def commit(self, rows: Sequence[Any]) -> None:
        """Returns once `rows` are committed; raises the transaction's error otherwise."""
        pending = _Pending(rows)
        self._ensure_thread()
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error

    def _ensure_thread(self) -> None:
        # A forked child (gunicorn's workers) inherits no thread: each process starts its own.
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            size = len(group[0].rows)
            while size < MAX_GROUP_ROWS:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                size += len(group[-1].rows)
            self._commit_group(group)

    def _commit_group(self, group: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            close_old_connections()  # the committer's own connection: drop it if it broke
            with transaction.atomic():
                self._write([row for pending in group for row in pending.rows])
        except BaseException as exc:  # handed to every waiting thread, which raises it
            error = exc
            connection.close()
        for pending in group:
            pending.error = error
            pending.done.set()
