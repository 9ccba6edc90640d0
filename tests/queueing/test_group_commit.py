"""Group commit: concurrent publishes share a transaction, and a failed transaction fails
every publish in it (the database broker's; /track then answers 503 to each)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

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
