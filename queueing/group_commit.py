"""Group commit: many threads' writes share one transaction, so one durable flush.

On the embedded default every /track publish is a SQLite transaction that waits for its
write-ahead log to be synced (tracardi_site/sqlite/base.py): a flush each, and the one
write lock taken for it. A publishing thread queues its rows. With no group being
written, it leads: it writes everything queued (its own rows first, and those of the
threads that queued behind it) in one transaction and marks each with the outcome. Then
it wakes each thread of its group, which returns without a transaction of its own, and
hands the lead to the first thread queued since, whose group starts with its own rows.
Each waiting thread is woken once, and once its rows are committed it waits for no later
group (with one lock that every waiter took in turn, it could queue behind the next
group's transaction and flush: bench/api_ratio.py, queue mode with 10 events, took
0.517 -> 0.541 of the bare endpoint, median of 6 alternating rounds). Nothing is
answered before its rows are committed, and if the transaction fails every request in it
fails (/track answers 503 to each). One request at a time costs no hand-off (the thread
is its own leader); concurrent requests in one process (gunicorn `--threads`) share
flushes.

Hand-written because it is a few lines of locking around one transaction, and the
libraries of the field do this inside their servers (Kafka's producer batching,
PostgreSQL's commit_delay); tests/queueing/test_group_commit.py holds its guarantees and
bench/api_ratio.py measures the publish path it serves.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError

# Rows written by one transaction at most: a bound on the transaction's size and time.
MAX_GROUP_ROWS = 5000


@dataclass(eq=False)
class _Pending:
    rows: Sequence[Any]
    # Held until the publishing thread may go on: its rows are committed (done), or it is
    # to lead the next group. Released once, by the leader before it.
    wake: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    error: BaseException | None = None


def _own_copy(error: BaseException) -> BaseException:
    """The group's error for one more thread to raise: an exception object of its own (the
    original's traceback would be rewritten by every thread raising it), of the same type
    for an Exception, a DatabaseError (/track answers 503) for an interrupt of the leader."""
    if not isinstance(error, Exception):
        copied: BaseException = DatabaseError(f"the group's transaction was interrupted: {error!r}")
    else:
        copied = copy.copy(error)
    copied.__cause__ = error
    return copied


class GroupCommitter:
    """One per process and writer; any publishing thread may lead a group."""

    def __init__(self, commit: Callable[[list[Any]], None]) -> None:
        self._commit = commit  # writes the rows in a transaction of its own and commits it
        self._pending: list[_Pending] = []  # in arrival order; the leader's rows first
        self._lock = threading.Lock()  # guards _pending, _leading and _next
        self._leading = False  # a thread is writing a group or about to
        self._next: _Pending | None = None  # holds the lead, has not taken its group yet

    def commit(self, rows: Sequence[Any]) -> None:
        """Returns once `rows` are committed; raises the transaction's error otherwise."""
        pending = _Pending(rows)
        pending.wake.acquire()
        try:
            with self._lock:
                self._pending.append(pending)
                lead = not self._leading
                if lead:
                    self._leading, self._next = True, pending
            if not lead:
                pending.wake.acquire()  # until a leader committed these rows or hands over
        except BaseException:  # interrupted (a signal in the main thread)
            self._abandon(pending)
            raise
        if not pending.done:  # this thread leads: its rows are first in the queue
            self._lead()
        if pending.error is not None:
            raise pending.error

    def waiting(self) -> int:
        """Publishes queued for the next group."""
        with self._lock:
            return len(self._pending)

    def _lead(self) -> None:
        group = self._take_group()
        error: BaseException | None = None
        try:
            self._commit([row for pending in group for row in pending.rows])
        except BaseException as exc:  # handed to every publish of the group, which raises it
            error = exc
        finally:  # whatever happened, the group is woken and the lead handed on
            for index, pending in enumerate(group):
                pending.error = error if index == 0 or error is None else _own_copy(error)
                pending.done = True
            with self._lock:
                following = self._pass_lead()
            for pending in group[1:]:  # the leader itself is running
                pending.wake.release()
            if following is not None:
                following.wake.release()  # not done: it leads the next group

    def _abandon(self, pending: _Pending) -> None:
        """A publish gave up before its group was taken (its caller fails): its rows leave
        the queue (once a leader took them they are committed all the same), and a lead it
        held goes on to the next in line."""
        following = None
        with self._lock:
            if pending in self._pending:
                self._pending.remove(pending)
                if self._next is pending:
                    following = self._pass_lead()
        if following is not None:
            following.wake.release()

    def _pass_lead(self) -> _Pending | None:
        """Under self._lock: the first publish queued holds the lead now (to be woken by the
        caller once the lock is released), or no thread leads when none is queued."""
        following = self._pending[0] if self._pending else None
        self._leading, self._next = following is not None, following
        return following

    def _take_group(self) -> list[_Pending]:
        with self._lock:
            self._next = None
            size, taken = 0, 0
            for pending in self._pending:
                if taken and size + len(pending.rows) > MAX_GROUP_ROWS:
                    break
                size += len(pending.rows)
                taken += 1
            group, self._pending = self._pending[:taken], self._pending[taken:]
        return group
