"""release_freed_memory: what a batch freed goes back to the system, not only to glibc's heaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from queueing.worker import MALLOC_TRIM, release_freed_memory


def rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


@pytest.mark.skipif(MALLOC_TRIM is None, reason="not glibc: there is no malloc_trim to call")
def test_memory_freed_between_live_objects_is_handed_back():
    # Chunks of 50 KiB (malloc's heap, under its mmap threshold), every other one freed: the
    # holes sit between live chunks, where glibc's own trimming of the heap's top never looks.
    chunks = [bytearray(50_000 + index) for index in range(2_000)]
    del chunks[::2]
    before = rss_kib()
    release_freed_memory()
    assert before - rss_kib() > 20 * 1024  # of about 50 MiB freed
    assert len(chunks) == 1_000  # the live half is untouched


def test_it_does_nothing_where_the_c_library_has_no_malloc_trim(monkeypatch):
    monkeypatch.setattr("queueing.worker.MALLOC_TRIM", None)
    release_freed_memory()
