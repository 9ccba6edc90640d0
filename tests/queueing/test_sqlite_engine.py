"""The SQLite engine queues write transactions on a file lock, bounded by the timeout."""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError, connection, transaction

from queueing.sqlite.base import DatabaseWrapper

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite engine only"),
]


def other_connection(timeout: float) -> DatabaseWrapper:
    settings = {**connection.settings_dict, "OPTIONS": {**connection.settings_dict["OPTIONS"], "timeout": timeout}}
    return DatabaseWrapper(settings, alias="other")


def test_a_writer_waits_for_the_lock_and_gives_up_after_the_timeout():
    other = other_connection(timeout=0.3)
    try:
        with transaction.atomic():  # this test's connection holds the write lock
            started = time.monotonic()
            with pytest.raises(OperationalError, match="write lock timeout"):
                other.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
            assert 0.3 <= time.monotonic() - started < 2
        # Released at commit: the other writer gets in at once.
        other.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
        other.commit()
        other.set_autocommit(True)
    finally:
        other.close()
