"""The background worker's memory per batch, in one process, without a load run: does it
depend on how many applied ids the profiles remember, and does anything grow without bound?

Builds storage jobs like bench/drain_ratio.py (page views, --per-job per job, --profiles
profiles), publishes them to the database broker and runs an in-process BackgroundWorker's
`process_batch` (receive, store, hooks, acknowledge, telemetry) over them, --batch messages
a batch, each batch touching --batch profiles. With `--windows full` every profile first
gets APPLIED_JOBS_KEPT job ids and APPLIED_EVENTS_KEPT event ids (the state every profile
of a long run reaches); with `--windows empty` the profiles are new.

Prints, per window state: the mean and maximum tracemalloc peak of a batch (what one batch
allocates at once, above what stays), the RSS after the first rounds and at the end, the
memory tracemalloc still traces after each round (a leak grows it round after round), and
the lines whose traced memory grew most between the first measured round and the last.
Run each state in its own process: RSS is a high-water mark.

    .venv/bin/python bench/worker_memory.py --windows full [--rounds 20] [--batch 50]
"""

from __future__ import annotations

import argparse
import gc
import logging
import time
import tracemalloc
import uuid

from benchlib import prepare
from drain_ratio import make_backlog


def rss_mib(field: str = "VmRSS") -> float:
    """VmRSS, or RssAnon (the heap: Python objects, malloc) or RssFile (mapped code)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss() -> str:
    return f"{rss_mib():.0f} MiB (anon {rss_mib('RssAnon'):.0f}, file {rss_mib('RssFile'):.0f})"


def fill_windows(profile_ids: list[str]) -> None:
    """Gives every profile full windows of ids it never saw (as after a long run), in the form
    the store writes them."""
    from storage.documents import APPLIED_EVENTS_KEPT, APPLIED_JOBS_KEPT, Applied
    from storage.models import ProfileRecord

    for record in ProfileRecord.objects.filter(id__in=profile_ids):
        full = Applied.of(
            [str(uuid.uuid4()) for _ in range(APPLIED_JOBS_KEPT)],
            [str(uuid.uuid4()) for _ in range(APPLIED_EVENTS_KEPT)],
        )
        record.applied_jobs, record.applied_events = full.jobs, full.events
        record.save(update_fields=["applied_jobs", "applied_events"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", choices=["empty", "full"], default="full")
    parser.add_argument("--profiles", type=int, default=200)
    parser.add_argument("--per-job", type=int, default=10)
    parser.add_argument("--batch", type=int, default=50, help="messages per batch (each of its own profile)")
    parser.add_argument("--no-trace", action="store_true", help="RSS only: tracemalloc's own memory counts in RSS")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of one job per profile, after 2 unmeasured")
    args = parser.parse_args()

    prepare("bench-memory", "embedded")
    logging.getLogger("storage.workers").setLevel(logging.WARNING)  # a line per save: noise here
    from django.db import connection, reset_queries

    from queueing.broker import get_broker
    from queueing.worker import get_worker_settings
    from storage.models import ProfileRecord
    from storage.workers.background import BackgroundWorker

    config = get_worker_settings("background")
    config.min_batch_size = config.max_batch_size = args.batch
    config.save()
    broker = get_broker()
    worker = BackgroundWorker(broker=broker)
    worker.config = config

    def run_round(tag: str) -> list[float]:
        """One job per profile, stored in batches; the tracemalloc peak of each batch (MiB)."""
        backlog = make_backlog(tag, events=args.profiles * args.per_job, per_job=args.per_job, sessions=args.profiles)
        for begin in range(0, len(backlog.messages), 500):
            broker.publish(backlog.messages[begin : begin + 500])
        del backlog
        gc.collect()
        peaks = []
        while True:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            if not worker.process_batch():
                return peaks
            peaks.append((tracemalloc.get_traced_memory()[1] - base) / 2**20)

    # make_backlog names profiles "<tag>-profile-<n>": the same tag prefix keeps the same profiles.
    if not args.no_trace:
        tracemalloc.start(1)  # one frame: deeper traces slow every allocation down
    run_round("p")  # creates the profiles
    profile_ids = [f"p-profile-{n}" for n in range(args.profiles)]
    if args.windows == "full":
        fill_windows(profile_ids)
    run_round("p")
    gc.collect()
    began = time.perf_counter()
    rss_start = rss()
    first = last = None
    traced, peaks = [], []
    for index in range(args.rounds):
        peaks += run_round("p")
        reset_queries()
        gc.collect()
        traced.append(tracemalloc.get_traced_memory()[0] / 2**20)
        if index == 0 and not args.no_trace:
            first = tracemalloc.take_snapshot()
    if not args.no_trace:
        last = tracemalloc.take_snapshot()
    record = ProfileRecord.objects.filter(id=profile_ids[0]).values("applied_jobs", "applied_events").get()
    stored = sum(len(str(v)) for v in record.values())
    print(f"windows {args.windows}: {args.profiles} profiles, batches of {args.batch}, {args.rounds} rounds "
          f"({len(peaks)} batches) in {time.perf_counter() - began:.0f}s")  # fmt: skip
    print(f"  stored windows of one profile: about {stored / 1024:.0f} KiB of JSON")
    if not args.no_trace:
        print(f"  peak per batch (tracemalloc): mean {sum(peaks) / len(peaks):.1f} MiB, max {max(peaks):.1f} MiB")
    print(f"  RSS: {rss_start} after the warm-up rounds, {rss()} at the end")
    if not args.no_trace:
        print(f"  traced after each round (MiB): {' '.join(f'{t:.1f}' for t in traced)}")
    print(f"  queries logged: {len(connection.queries)} (DEBUG={connection.force_debug_cursor})")
    if args.no_trace:
        return
    print("  grown most from round 1 to the last:")
    for stat in last.compare_to(first, "lineno")[:6]:
        print(f"    {stat.size_diff / 1024:+8.1f} KiB {stat.count_diff:+6d} blocks  {stat.traceback}")


if __name__ == "__main__":
    main()
