"""Group commit: many threads' writes share one transaction, so one durable flush.

On the embedded default every /track publish is a SQLite transaction that waits for its
write-ahead log to be synced (tracardi_site/sqlite/base.py): a flush each, and the one
write lock taken for it. A publishing thread queues its rows; the first thread to get
the leader lock writes everything queued (its own rows and those of the threads waiting
behind it) in one transaction, and marks each with the outcome; a
thread whose rows a leader committed returns without a transaction of its own. Nothing
is answered before its rows are committed, and if the transaction fails every request in
it fails (/track answers 503 to each). One request at a time costs no hand-off (the
thread is its own leader); concurrent requests in one process (gunicorn `--threads`)
share flushes.

Hand-written because it is a few lines of locking around one transaction, and the
libraries of the field do this inside their servers (Kafka's producer batching,
PostgreSQL's commit_delay); tests/queueing/test_group_commit.py holds its guarantees and
bench/api_ratio.py measures the publish path it serves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# Rows written by one transaction at most: a bound on the transaction's size and time.
MAX_GROUP_ROWS = 5000


@dataclass
class _Pending:
    rows: Sequence[Any]
    done: bool = False
    error: BaseException | None = None


class GroupCommitter:
    """One per process and writer; any publishing thread may lead a group."""

    def __init__(self, commit: Callable[[list[Any]], None]) -> None:
        self._commit = commit  # writes the rows in a transaction of its own and commits it
        self._pending: list[_Pending] = []
        self._queue_lock = threading.Lock()  # guards _pending
        self._leader = threading.Lock()  # held by the thread writing a group

    def commit(self, rows: Sequence[Any]) -> None:
        """Returns once `rows` are committed; raises the transaction's error otherwise."""
        pending = _Pending(rows)
        with self._queue_lock:
            self._pending.append(pending)
        while not pending.done:
            with self._leader:
                if not pending.done:  # no leader took it while this thread waited
                    self._commit_group(self._take_group())
        if pending.error is not None:
            raise pending.error

    def waiting(self) -> int:
        """Publishes queued for the next group."""
        with self._queue_lock:
            return len(self._pending)

    def _take_group(self) -> list[_Pending]:
        with self._queue_lock:
            size, taken = 0, 0
            for pending in self._pending:
                if taken and size + len(pending.rows) > MAX_GROUP_ROWS:
                    break
                size += len(pending.rows)
                taken += 1
            group, self._pending = self._pending[:taken], self._pending[taken:]
        return group

    def _commit_group(self, group: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            self._commit([row for pending in group for row in pending.rows])
        except BaseException as exc:  # handed to every publish of the group, which raises it
            error = exc
        for pending in group:
            pending.error = error
            pending.done = True
