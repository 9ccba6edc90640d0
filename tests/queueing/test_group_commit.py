"""Group commit: concurrent publishes share a transaction, and a failed transaction fails
every publish in it (the database broker's; /track then answers 503 to each)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from django.db import DatabaseError, IntegrityError, transaction

from queueing.group_commit import GroupCommitter
from queueing.models import QueueMessage
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 12


def row(n: int, *, payload: str | None = "{}") -> QueueMessage:
    return QueueMessage(topic="functions", partition=0, subscription="s", key=f"k{n}", payload=payload)


class HeldWriter:
    """The real bulk insert in a transaction, holding the first one until every thread has
    queued its rows, so the rest must share the second one."""

    def __init__(self) -> None:
        self.groups: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, rows: list[QueueMessage]) -> None:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(10)
        self.groups.append(len(rows))
        with transaction.atomic():
            QueueMessage.objects.bulk_create(rows)


def publish_concurrently(committer: GroupCommitter, writer: HeldWriter, rows: list[QueueMessage]) -> list:
    outcomes: list = [None] * len(rows)

    def publish(index: int) -> None:
        try:
            committer.commit([rows[index]])
        except DatabaseError as exc:
            outcomes[index] = exc

    with ThreadPoolExecutor(len(rows)) as pool:
        futures = [pool.submit(publish, 0)]
        assert writer.entered.wait(10)  # the first transaction is open and held
        futures += [pool.submit(publish, i) for i in range(1, len(rows))]
        wait_for(lambda: committer.waiting() == len(rows) - 1, timeout=10, message="every publish queued")
        writer.release.set()
        for future in futures:
            future.result(timeout=30)
    return outcomes


def test_concurrent_publishes_share_a_transaction_and_all_are_committed():
    writer = HeldWriter()
    committer = GroupCommitter(writer)
    outcomes = publish_concurrently(committer, writer, [row(n) for n in range(THREADS)])
    assert outcomes == [None] * THREADS
    assert writer.groups == [1, THREADS - 1]
    assert QueueMessage.objects.count() == THREADS


def test_a_failed_group_commit_fails_every_publish_in_it_and_stores_none_of_them():
    writer = HeldWriter()
    committer = GroupCommitter(writer)
    rows = [row(n) for n in range(THREADS)]
    rows[5] = row(5, payload=None)  # NOT NULL: the second transaction fails
    outcomes = publish_concurrently(committer, writer, rows)
    assert outcomes[0] is None  # the first went in its own transaction
    assert all(isinstance(outcome, IntegrityError) for outcome in outcomes[1:])
    assert QueueMessage.objects.count() == 1
    committer.commit([row(99)])  # the committer goes on after a failure
    assert QueueMessage.objects.count() == 2


class ScriptedWriter:
    """Records each group's rows and the thread that wrote it; the transaction numbered
    `hold` waits for `release`, and `during[n]` runs inside the transaction numbered n."""

    def __init__(self, *, hold: int) -> None:
        self.groups: list[list[int]] = []
        self.writers: list[int] = []
        self.hold, self.entered, self.release = hold, threading.Event(), threading.Event()
        self.during: dict[int, Callable[[], object]] = {}

    def __call__(self, rows: list[int]) -> None:
        number = len(self.groups) + 1
        self.groups.append(list(rows))
        self.writers.append(threading.get_ident())
        if number in self.during:
            self.during[number]()
        if number == self.hold:
            self.entered.set()
            assert self.release.wait(10), "the held transaction was never released"


class Publishes:
    """Publishes on daemon threads, each recording its thread: a publish that never
    returns fails its test (result's timeout) without keeping the test run alive."""

    def __init__(self, committer: GroupCommitter) -> None:
        self.committer, self.thread_of = committer, {}

    def start(self, n: int) -> Future:
        future: Future = Future()

        def publish() -> None:
            self.thread_of[n] = threading.get_ident()
            try:
                self.committer.commit([n])
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(None)

        threading.Thread(target=publish, daemon=True).start()
        return future


def test_a_publish_whose_rows_are_committed_returns_while_the_next_group_is_written():
    """The leader wakes the threads of its group itself: none of them waits for the lock of
    the next group's transaction to learn that its rows are committed."""
    writer = ScriptedWriter(hold=3)
    committer = GroupCommitter(writer)
    publishes = Publishes(committer)
    first_held, fourth = threading.Event(), []
    try:
        writer.during[1] = lambda: first_held.wait(10)
        first = publishes.start(1)
        wait_for(lambda: writer.groups, timeout=10, message="the first transaction")
        second, third = publishes.start(2), publishes.start(3)
        wait_for(lambda: committer.waiting() == 2, timeout=10, message="two publishes queued")
        # The second transaction ([2, 3]) waits inside until a fourth publish is queued.
        writer.during[2] = lambda: (
            fourth.append(publishes.start(4)),
            wait_for(lambda: committer.waiting() == 1, timeout=10, message="the fourth publish queued"),
        )
        first_held.set()
        assert writer.entered.wait(10), "the third transaction"
        # [4] is being written and held: both publishes of [2, 3] have already returned.
        second.result(timeout=10), third.result(timeout=10)
        assert not fourth[0].done()
        writer.release.set()
        first.result(timeout=10), fourth[0].result(timeout=10)
    finally:
        first_held.set(), writer.release.set()
    assert [sorted(group) for group in writer.groups] == [[1], [2, 3], [4]]


def test_a_group_stops_at_max_group_rows_and_each_group_is_written_by_its_first_publisher(monkeypatch):
    monkeypatch.setattr("queueing.group_commit.MAX_GROUP_ROWS", 3)
    writer = ScriptedWriter(hold=1)
    committer = GroupCommitter(writer)
    publishes = Publishes(committer)
    try:
        futures = [publishes.start(0)]
        assert writer.entered.wait(10)
        for n in range(1, 8):  # one at a time: they queue in this order
            futures.append(publishes.start(n))
            wait_for(lambda n=n: committer.waiting() == n, timeout=10, message=f"publish {n} queued")
        writer.release.set()
        for future in futures:
            future.result(timeout=10)
    finally:
        writer.release.set()
    assert writer.groups == [[0], [1, 2, 3], [4, 5, 6], [7]]
    # Each group's transaction ran on the thread of its first rows: the lead was handed to it.
    assert writer.writers == [publishes.thread_of[group[0]] for group in writer.groups]


class Interrupted(BaseException):
    pass


def test_a_publish_interrupted_while_it_waits_leaves_the_queue_and_the_committer_goes_on():
    """A signal in the main thread (Ctrl-C in a management command) ends a waiting publish:
    its rows are not written, and the next publishes are not left without a leader."""
    writer = ScriptedWriter(hold=1)
    committer = GroupCommitter(writer)
    publishes = Publishes(committer)

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        first = publishes.start(0)
        assert writer.entered.wait(10)
        main = threading.get_ident()

        def signal_main_once_queued() -> None:
            wait_for(lambda: committer.waiting() == 1, timeout=10, message="the main thread's publish queued")
            signal.pthread_kill(main, signal.SIGUSR1)

        threading.Thread(target=signal_main_once_queued, daemon=True).start()
        with pytest.raises(Interrupted):
            committer.commit([1])
        assert committer.waiting() == 0
        writer.release.set()
        first.result(timeout=10)
        publishes.start(2).result(timeout=10)
    finally:
        writer.release.set()
        signal.signal(signal.SIGUSR1, previous)
    assert writer.groups == [[0], [2]]
