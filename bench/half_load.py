"""Half load with the workers running: is everything accepted stored, how soon, and does
memory stay flat?

Starts gunicorn (-w 2, gunicorn.conf.py's gthread threads) and `run_workers` (the
embedded defaults: background and workflow workers, the outbox cluster; `--queue` adds
the collector) on a fresh store, then:

1. maximum: wrk without pauses (-c16, 10 events per request, default mode or with
   `--queue` queue mode) for --max-seconds: the maximum accepted rate with the workers
   running; then waits until the workers stored all of it;
2. half load for --minutes: wrk at half that rate (--share; or at --rate requests/s;
   each connection paced by wrk's delay(), re-adjusted every 10 s chunk to the rate
   measured), plus a probe thread that sends one
   1-event request of type `probe` every --probe-interval seconds and a poller that looks
   each probe's event up through the store every 0.1 s, by id (`store.get_event`) and by
   search (`store.get`).

Figures:
- stored rate / accepted rate over the half-load phase: page views counted in the store
  at the end of the first chunk and of the last, against the page views wrk had answered
  with a 2xx between the same two moments; 1.00 means the backlog stayed where it was;
- accepted -> stored latency of the probes, p95 (<= 1 s) and p99: accepted = when the
  probe's /track answer arrived; stored = when the probe's event was first returned by
  `store.get_event` (a read by id: on Elasticsearch a realtime multi-get on the monthly
  index the store wrote it to, which returns it once the bulk request that wrote it was
  acknowledged, so durable and readable by id; on the database store the committed row);
  the poll adds 0-0.1 s. The probes share the load's topic, partitions and batches, so
  they wait like any event;
- accepted -> searchable p95 and p99 (reported, no target): until the probe's event was
  first returned by `store.get("event", id)`, which is a search on Elasticsearch and sees
  it only after the index's next refresh (every 1 s): what a console list or a search
  shows. On the database store the two are the same moment;
- RSS from /proc/<pid>/status every 2 s of every process of gunicorn's tree (the API)
  and of run_workers' tree (the supervisor, each worker, the outbox cluster): the maximum
  per side (<= 150 MiB), and the process whose mean RSS grew most from the first half of
  the phase to the second (second/first <= 1.05: flat). Before the half-load phase every
  profile of the run gets full windows of applied ids (APPLIED_JOBS_KEPT job ids and
  APPLIED_EVENTS_KEPT event ids it never saw, written through the store; see
  fill_windows): the state every profile reaches in a long run (at 900 events/s over 420
  profiles the event windows fill after about 8 minutes, the job windows after more than
  an hour). So the halves compare that steady state, not the windows filling.
  `--no-fill` leaves them empty, to watch the warm-up instead.

    .venv/bin/python bench/half_load.py [--minutes 2] [--max-seconds 8] [--rate N] [--queue] [--no-fill] [--stack real]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests
from benchlib import (
    SOURCE,
    THREADS,
    add_common_arguments,
    command_line,
    describe_stack,
    figure,
    percentile,
    prepare,
    process_tree,
    report,
    rss_mib,
    run_wrk,
    set_workers,
    start,
    start_web,
    stop,
    wait_for_log_lines,
    wait_until,
)

CHUNK_SECONDS = 10
CONNECTIONS = 8
PER_REQUEST = 10
SAMPLE_SECONDS = 2.0
MEMORY_LIMIT_MIB = 150


def page_views() -> int:
    from storage.store import get_store

    store = get_store()
    store.refresh()
    return store.count("event", type="page-view")


def fill_windows() -> int:
    """Fills every stored profile's windows of applied job and event ids (storage/documents.py)
    through the store's own write path: per profile APPLIED_JOBS_KEPT jobs, the first
    APPLIED_EVENTS_KEPT of them carrying one operation of a new event id. The operation
    removes an item from a list the profile does not have, which changes no data (only
    metadata.time.update). Returns how many profiles were filled."""
    from storage.documents import APPLIED_EVENTS_KEPT, APPLIED_JOBS_KEPT
    from storage.jobs import ProfileChange, ProfileOperation
    from storage.store import get_store

    store = get_store()
    store.refresh()
    ids, after = [], None
    while True:
        page = store.browse("profile", page_size=200, after=after)
        ids += [profile["id"] for profile in page.items]
        if page.next is None:
            break
        after = page.next
    for begin in range(0, len(ids), 20):
        changes = [
            ProfileChange(profile_id, f"fill-{profile_id}-{n}", [
                ProfileOperation("remove", "misc.bench_fill", "x", event=f"fill-{profile_id}-{n}")
            ] if n < APPLIED_EVENTS_KEPT else [])
            for profile_id in ids[begin : begin + 20]
            for n in range(APPLIED_JOBS_KEPT)
        ]  # fmt: skip
        store.apply_profile_changes(changes)
    return len(ids)


class Probes:
    """One 1-event request every `interval` s; each event's answer time and first sighting."""

    def __init__(self, url: str, *, interval: float, queue: bool) -> None:
        self.url = url
        self.interval = interval
        self.queue = queue
        self.answered: dict[str, float] = {}
        self.seen: dict[str, float] = {}  # stored: read by id
        self.searchable: dict[str, float] = {}  # found by a search
        self.failed = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=work, daemon=True) for work in (self.send, self.poll)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def send(self) -> None:
        """On schedule, each probe from a small pool: a slow answer does not delay the next."""
        with ThreadPoolExecutor(4) as pool:
            index = 0
            began = time.monotonic()
            while not self.stopping.is_set():
                pool.submit(self.post, index)
                index += 1
                self.stopping.wait(max(0.0, began + index * self.interval - time.monotonic()))

    def post(self, index: int) -> None:
        body = {
            "source": {"id": SOURCE},
            "session": {"id": f"probe-session-{index % 20}"},
            "events": [{"type": "probe", "properties": {"n": index}}],
            "options": {"queue": self.queue},
        }
        try:
            response = requests.post(f"{self.url}/track", json=body, timeout=30)
            now = time.time()
            response.raise_for_status()
            with self.lock:
                self.answered[response.json()["events"][0]] = now
        except (requests.RequestException, KeyError, ValueError):
            with self.lock:
                self.failed += 1

    def poll(self) -> None:
        from storage.store import get_store

        store = get_store()
        while not self.stopping.is_set() or self.pending():
            for event_id, answered in self.pending_stored():
                if store.get_event(event_id, received_before=datetime.fromtimestamp(answered, tz=UTC)) is not None:
                    with self.lock:
                        self.seen[event_id] = time.time()
            for event_id in self.pending_searchable():
                if store.get("event", event_id) is not None:
                    with self.lock:
                        self.searchable[event_id] = time.time()
            time.sleep(0.1)

    def pending_stored(self) -> list[tuple[str, float]]:
        with self.lock:
            return [(e, t) for e, t in self.answered.items() if e not in self.seen]

    def pending_searchable(self) -> list[str]:
        with self.lock:
            return [e for e in self.seen if e not in self.searchable]

    def pending(self) -> bool:
        return bool(self.pending_stored() or self.pending_searchable())

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self.threads[0].join()
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.threads[1].join(0)

    def latencies(self) -> list[float]:
        with self.lock:
            return [self.seen[e] - self.answered[e] for e in self.answered if e in self.seen]

    def search_latencies(self) -> list[float]:
        with self.lock:
            return [self.searchable[e] - self.answered[e] for e in self.answered if e in self.searchable]


class Memory:
    """RSS of every process of the given trees, every SAMPLE_SECONDS."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
        self.names: dict[int, str] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stopping.is_set():
            now = time.monotonic()
            for side, root in self.roots.items():
                for pid in process_tree(root):
                    rss = rss_mib(pid)
                    if rss is None:
                        continue
                    self.names.setdefault(pid, command_line(pid))
                    self.samples.setdefault((side, pid), []).append((now, rss))
            self.stopping.wait(SAMPLE_SECONDS)

    def maximum(self, side: str) -> tuple[float, int]:
        found = [(max(r for _, r in s), pid) for (which, pid), s in self.samples.items() if which == side and s]
        return max(found) if found else (math.nan, 0)

    def growth(self) -> tuple[float, float, int]:
        """(first-half mean, second-half mean, pid) of the process whose mean grew most."""
        worst = (math.nan, math.nan, 0)
        begin = min(t for s in self.samples.values() for t, _ in s)
        end = max(t for s in self.samples.values() for t, _ in s)
        middle = (begin + end) / 2
        for (_side, pid), samples in self.samples.items():
            first = [r for t, r in samples if t < middle]
            second = [r for t, r in samples if t >= middle]
            if len(first) < 2 or len(second) < 2:
                continue  # a process that lived through only part of the phase
            means = (sum(first) / len(first), sum(second) / len(second), pid)
            if math.isnan(worst[0]) or means[1] / means[0] > worst[1] / worst[0]:
                worst = means
        return worst


def wait_for_workers(log: Path, workers: subprocess.Popen, *, queue: bool) -> None:
    """Until run_workers' log shows every worker started: the workers this benchmark enables
    (queueing.models.DEFAULT_ENABLED and set_workers) and the outbox cluster when it runs."""
    from django.conf import settings

    expected = ["Worker background started", "Worker workflow started"]
    if queue:
        expected.append("Worker collector started")
    if settings.OUTBOX_RUN_CLUSTER:
        expected.append("] running.")  # django-q: "Q Cluster <name> [<tenant>] running."
    wait_for_log_lines(workers, log, expected, what="the workers to start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the half-load phase")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="length of the maximum-rate phase")
    parser.add_argument("--share", type=float, default=0.5, help="the load, as a share of the maximum rate")
    parser.add_argument(
        "--rate", type=float, help="the load in requests/s, instead of --share of the maximum (to compare two builds)"
    )
    parser.add_argument("--probe-interval", type=float, default=0.2, help="seconds between probe requests")
    parser.add_argument("--queue", action="store_true", help="queue mode (the collector worker runs too)")
    parser.add_argument("--no-fill", action="store_true", help="leave the profiles' windows of applied ids empty")
    parser.add_argument("--gunicorn", default="-w 2")
    add_common_arguments(parser)
    args = parser.parse_args()

    directory = prepare("bench-half", args.stack)
    set_workers(background=1, collector=1 if args.queue else 0)
    web, url = start_web(directory, options=args.gunicorn)
    workers = start([sys.executable, "manage.py", "run_workers"], directory / "workers.log")
    mode = "queue" if args.queue else "default"
    try:
        # The maximum phase must not overlap the workers' start-up (Django, the broker's
        # subscriptions, the store's client), which took about 6 s on the real stack.
        wait_for_workers(directory / "workers.log", workers, queue=args.queue)
        print(f"machine: {describe_stack()}; gunicorn {args.gunicorn} {THREADS}; {mode} mode, {PER_REQUEST} events "
              f"per request; half load for {args.minutes:g} min")  # fmt: skip
        maximum = run_wrk(url, seconds=args.max_seconds, per_request=PER_REQUEST, queue=args.queue)
        accepted = maximum["ok"] * PER_REQUEST
        print(f"maximum: {maximum['ok_per_second']:.0f} requests/s accepted with the workers running "
              f"({int(maximum['non2xx'])} non-2xx); waiting for the workers to store it")  # fmt: skip
        wait_until(lambda: page_views() >= accepted, timeout=600, what="the maximum phase to be stored", interval=0.5)
        if not args.no_fill:
            print(f"filled the windows of applied ids of {fill_windows()} profiles (memory in steady state)")

        target = args.rate or maximum["ok_per_second"] * args.share
        cycle_ms = CONNECTIONS * 1000 / target
        delay = cycle_ms * 0.8
        probes = Probes(url, interval=args.probe_interval, queue=args.queue)
        memory = Memory({"api": web.pid, "workers": workers.pid})
        probes.start()
        memory.thread.start()
        chunks = []  # (ok requests, seconds, stored page views at the end)
        non2xx = 0.0
        for _ in range(max(2, round(args.minutes * 60 / CHUNK_SECONDS))):
            stats = run_wrk(url, seconds=CHUNK_SECONDS, per_request=PER_REQUEST, queue=args.queue,
                            connections=CONNECTIONS, delay_ms=delay)  # fmt: skip
            chunks.append((stats["ok"], stats["seconds"], page_views()))
            non2xx += stats["non2xx"] + stats["socket_errors"]
            # The answer time is what the connection spends besides the pause: keep the cycle.
            answer_ms = max(0.0, CONNECTIONS * 1000 / max(stats["ok_per_second"], 1e-9) - delay)
            delay = max(0.0, cycle_ms - answer_ms)
            seen = f"{len(probes.seen)}/{len(probes.answered)}"
            print(f"  half load: {stats['ok_per_second']:.0f} requests/s (target {target:.0f}), "
                  f"stored page views {chunks[-1][2]}, probes seen {seen}")  # fmt: skip
        memory.stopping.set()
        probes.stop(timeout=60)
    finally:
        stop(workers)
        stop(web)

    later = chunks[1:]
    accepted_rate = sum(c[0] for c in later) * PER_REQUEST / sum(c[1] for c in later)
    stored_rate = (chunks[-1][2] - chunks[0][2]) / sum(c[1] for c in later)
    backlog = sum(c[0] for c in chunks) * PER_REQUEST + accepted - chunks[-1][2]
    load_rate = sum(c[0] for c in later) / sum(c[1] for c in later)
    latencies = probes.latencies()
    searchable = probes.search_latencies()
    api_max, api_pid = memory.maximum("api")
    workers_max, workers_pid = memory.maximum("workers")
    first, second, grown_pid = memory.growth()
    lost = len(probes.answered) - len(latencies)
    rows = [
        figure("half load: accepted (req/s)", load_rate, "req/s", baseline=maximum["ok_per_second"],
               baseline_label="max", note=f"{mode} mode, {PER_REQUEST} events per request; {int(non2xx)} non-2xx "
               "or socket errors at half load"),
        figure("half load: stored/accepted rate", stored_rate, "events/s", baseline=accepted_rate,
               baseline_label="accepted", target=(">=", 0.95),
               note=f"backlog at the end: {backlog:.0f} page views "
               f"({backlog / max(accepted_rate, 1e-9):.1f} s of traffic; below 0 by the requests in flight when "
               "a wrk run stopped, stored but not counted as accepted)"),
        figure("accepted -> stored p95", percentile(latencies, 0.95), "s", target=("<=", 1.0),
               note=f"{len(latencies)} probes, one every {args.probe_interval:g}s; p50 "
               f"{percentile(latencies, 0.5):.2f}s; {lost} not seen within 60s; {probes.failed} probe requests "
               "failed"),
        figure("accepted -> stored p99", percentile(latencies, 0.99), "s"),
        figure("accepted -> searchable p95", percentile(searchable, 0.95), "s",
               note=f"found by a search (Elasticsearch: after its refresh); p99 {percentile(searchable, 0.99):.2f}s, "
               f"p50 {percentile(searchable, 0.5):.2f}s; {len(probes.answered) - len(searchable)} not found within "
               "60s"),
        figure("max RSS, API process", api_max, "MiB", target=("<=", MEMORY_LIMIT_MIB),
               note=f"pid {api_pid}: {memory.names.get(api_pid, '?')[:80]}"),
        figure("max RSS, worker process", workers_max, "MiB", target=("<=", MEMORY_LIMIT_MIB),
               note=f"pid {workers_pid}: {memory.names.get(workers_pid, '?')[:80]}"),
        figure("RSS 2nd half / 1st half (most grown)", second, "MiB", baseline=first,
               baseline_label="1st half", target=("<=", 1.05),
               note=f"pid {grown_pid}: {memory.names.get(grown_pid, '?')[:80]}; over {args.minutes:g} min; "
               f"windows of applied ids {'empty at the start' if args.no_fill else 'full from the start'}"),
    ]  # fmt: skip
    report(
        rows,
        args.json,
        latencies=latencies,
        search_latencies=searchable,
        memory={f"{side} {pid} {memory.names.get(pid, '?')}": s for (side, pid), s in memory.samples.items()},
    )


if __name__ == "__main__":
    main()
