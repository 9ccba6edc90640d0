"""The write lock's retry schedule (tracardi_site/sqlite/base.py acquire_write_lock), on a
clock of the test's own: the waits are recorded, not slept."""

from __future__ import annotations

import fcntl
import os
from types import SimpleNamespace

import pytest
from django.db import OperationalError

from tracardi_site.sqlite import base
from tracardi_site.sqlite.base import (
    FIRST_RETRY_SECONDS,
    MAX_RETRY_SECONDS,
    SHORT_RETRY_SECONDS,
    SHORT_WAIT_SECONDS,
    acquire_write_lock,
    open_write_lock,
)


class Clock:
    """time.monotonic and time.sleep for the module: a sleep advances the clock and is
    recorded with the time waited when it began; `after_sleeps` runs once after that many."""

    def __init__(self) -> None:
        self.now, self.sleeps = 1000.0, []
        self.after_sleeps: tuple[int, object] | None = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append((self.now - 1000.0, seconds))
        self.now += seconds
        if self.after_sleeps and len(self.sleeps) == self.after_sleeps[0]:
            self.after_sleeps[1]()


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    # The module's own name for the time module, so no other code sees the test's clock.
    monkeypatch.setattr(base, "time", SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep))
    return clock


@pytest.fixture
def lock_files(tmp_path):
    """Two descriptors of one lock file: flock locks of separate opens exclude each other."""
    holder, waiter = open_write_lock(str(tmp_path / "db")), open_write_lock(str(tmp_path / "db"))
    yield holder, waiter
    os.close(holder), os.close(waiter)


def test_a_free_lock_is_taken_without_a_wait(clock, lock_files):
    _holder, waiter = lock_files
    acquire_write_lock(waiter, timeout=1)
    assert clock.sleeps == []


def test_retries_stay_short_for_the_first_milliseconds_then_grow_to_the_maximum(clock, lock_files):
    holder, waiter = lock_files
    fcntl.flock(holder, fcntl.LOCK_EX)
    with pytest.raises(OperationalError, match="database is locked"):
        acquire_write_lock(waiter, timeout=0.05)
    # Jitter makes each wait 0.5-1 times its delay.
    assert clock.sleeps[0][1] <= FIRST_RETRY_SECONDS
    short = [seconds for waited, seconds in clock.sleeps if waited < SHORT_WAIT_SECONDS]
    later = [seconds for waited, seconds in clock.sleeps if waited >= SHORT_WAIT_SECONDS]
    assert len(short) > 5 and max(short) <= SHORT_RETRY_SECONDS
    assert max(later) > SHORT_RETRY_SECONDS and max(later) <= MAX_RETRY_SECONDS
    assert clock.now - 1000.0 > 0.05  # gave up only after the timeout


def test_the_lock_is_taken_at_the_first_retry_after_it_is_released(clock, lock_files):
    holder, waiter = lock_files
    fcntl.flock(holder, fcntl.LOCK_EX)
    clock.after_sleeps = (3, lambda: fcntl.flock(holder, fcntl.LOCK_UN))
    acquire_write_lock(waiter, timeout=1)
    assert len(clock.sleeps) == 3
