"""The background worker's drain rate against the raw bulk-write rate of the same store.

Each round makes a backlog of --events page views (--per-job per storage job, the shape of
a 10-event /track request; --sessions sessions and profiles, each one's first job opening
the session and creating the profile, as the API does) with the project's own functions:
`validate_track_payload`, `assign_event_ids` and `build_storage_jobs`, the jobs
published to system/functions as the API publishes them. Then, alternating (ABBA: drain,
raw, raw, drain, ...), on fresh session, profile and event ids each round:

- drain: `manage.py run_worker background` (with the worker settings in the database,
  by default batches of up to 1,000 messages) stores the backlog; timed from its
  "started" line until the broker has no message of system/functions waiting or
  unacknowledged (polled every 0.1 s; the worker acknowledges a batch only after storing
  it) and then one `store.refresh()` and the count show every event of the round;
- raw: the same kind of jobs written by this process straight through the store's bulk
  methods (`apply_profile_changes`, `save_sessions`, `save_events`), in batches of the
  worker's max_batch_size messages, then one refresh and the same count.

Both sides end with one refresh and one count. (Until 2026-11 the drain side refreshed
and counted every 0.1 s while the worker wrote: each refresh makes Elasticsearch write a
new segment, and it spent 0.7-1.0 CPU-s per 10,000 events during a drain against 0.4-0.55
during the raw writes; polled through the broker it spends the same as raw. So the old
figure charged the worker for the benchmark's own polling.)

The figure is events/s stored by the worker divided by events/s written raw (target >=
0.7): what the broker, the worker loop and its checks cost on top of the store's writes.

`--replicas 1,2,4` then drains one backlog per replica count with that many workers
started at once, timed from when the last of them started (what was stored before that
is left out): the scale-out, as ratios to one worker. On a 2-core machine that shares its
cores with the store (and on the real stack with the JVMs) it cannot show much.

`--warmup` (the real stack) first runs one drain and one raw round, uncounted.

    .venv/bin/python bench/drain_ratio.py [--events 20000] [--rounds 2] [--replicas 1,2,4] [--stack real --warmup]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from dataclasses import dataclass

from benchlib import (
    SOURCE,
    add_common_arguments,
    describe_stack,
    figure,
    median,
    prepare,
    report,
    start,
    stop,
    wait_for_log_lines,
    wait_until,
)

DRAIN_TIMEOUT = 600


@dataclass
class Backlog:
    messages: list  # OutgoingMessage
    events: int


def make_backlog(tag: str, *, events: int, per_job: int, sessions: int) -> Backlog:
    from django.utils import timezone

    from queueing.broker import OutgoingMessage
    from queueing.topics import FUNCTIONS
    from tracking.selectors import get_rules, get_source
    from tracking.services import Identity, RequestMeta, assign_event_ids, build_storage_jobs
    from tracking.validation import validate_track_payload

    source = get_source(source_id=SOURCE)
    rules = get_rules()
    messages, stored = [], 0
    for index in range(events // per_job):
        session = index % sessions
        first = index < sessions
        identity = Identity(
            session_id=f"{tag}-session-{session}",
            profile_id=f"{tag}-profile-{session}",
            new_session=first,
            new_profile=first,
        )
        payload = validate_track_payload(
            {
                "source": {"id": SOURCE},
                "session": {"id": identity.session_id},
                "events": [
                    {"type": "page-view", "properties": {"id": str(i), "category": "demo"}} for i in range(per_job)
                ],
            }
        )
        payload["events"] = assign_event_ids(payload["events"], source_id=SOURCE, session_id=identity.session_id)
        meta = RequestMeta(
            ip="127.0.0.1", headers={"user-agent": "bench/drain_ratio"}, received_at=timezone.now().isoformat()
        )
        for job in build_storage_jobs(
            source=source, payload=payload, meta=meta, identity=identity, job_id=str(uuid.uuid4()), rules=rules
        ):
            messages.append(OutgoingMessage(topic=FUNCTIONS, key=identity.key, payload=job.to_payload()))
            stored += len(job.events)
    return Backlog(messages, stored)


def stored_events() -> int:
    from storage.store import get_store

    store = get_store()
    store.refresh()
    return store.count("event")


def waiting() -> int:
    """Messages of system/functions not yet acknowledged by the background worker(s)."""
    from queueing.broker import get_broker
    from queueing.topics import FUNCTIONS

    entries = get_broker().backlog(topic=FUNCTIONS)
    return sum(e.count for e in entries if e.subscription == FUNCTIONS.subscription)


def publish(backlog: Backlog) -> None:
    from queueing.broker import get_broker

    broker = get_broker()
    for begin in range(0, len(backlog.messages), 500):
        broker.publish(backlog.messages[begin : begin + 500])


def drain(backlog: Backlog, *, replicas: int, directory, tag: str) -> float:
    """Publishes the backlog, starts `replicas` background workers at once; events/s from when
    the last one started until everything is stored."""
    before = stored_events()
    publish(backlog)
    logs = [directory / f"worker-{tag}-{i}.log" for i in range(replicas)]
    workers = [start([sys.executable, "manage.py", "run_worker", "background"], log) for log in logs]
    try:
        # When the last one started: each wait returns at once for a worker already started.
        began = max(
            wait_for_log_lines(worker, log, ["started (pid"], what="a background worker to start")
            for worker, log in zip(workers, logs, strict=True)
        )
        already = stored_events() - before
        target = before + backlog.events
        # The broker first (cheap, and no refresh while the worker writes), then the store.
        ended = wait_until(
            lambda: waiting() == 0 and stored_events() >= target, timeout=DRAIN_TIMEOUT, what="the drain", interval=0.1
        )
    finally:
        for worker in workers:
            stop(worker)
    return (backlog.events - already) / (ended - began)


def raw(backlog: Backlog, *, batch: int) -> float:
    """The same kind of documents written straight through the store, `batch` jobs at a time."""
    from storage.jobs import StorageJob
    from storage.store import get_store

    store = get_store()
    jobs = [StorageJob.from_payload(m.payload) for m in backlog.messages]
    target = stored_events() + backlog.events
    began = time.perf_counter()
    for begin in range(0, len(jobs), batch):
        chunk = jobs[begin : begin + batch]
        store.apply_profile_changes([j.profile for j in chunk if j.profile])
        store.save_sessions([j.session for j in chunk if j.session])
        store.save_events([e for j in chunk for e in j.events])
    if stored_events() < target:
        raise SystemExit("bench: the raw writes did not store every event")
    return backlog.events / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000, help="page views per backlog")
    parser.add_argument("--per-job", type=int, default=10, help="events per storage job (per /track request)")
    parser.add_argument("--sessions", type=int, default=200, help="sessions (and profiles) the jobs rotate over")
    parser.add_argument("--rounds", type=int, default=2, help="drain and raw rounds each (ABBA order)")
    parser.add_argument("--batch", type=int, help="the background worker's max_batch_size (default: its setting)")
    parser.add_argument("--warmup", action="store_true", help="a drain and a raw round first, uncounted (JVMs)")
    parser.add_argument("--replicas", default="", help="e.g. 1,2,4: also the drain rate with that many workers")
    add_common_arguments(parser)
    args = parser.parse_args()

    directory = prepare("bench-drain", args.stack)
    from queueing.worker import get_worker_settings

    config = get_worker_settings("background")
    if args.batch:
        config.max_batch_size = args.batch
        config.save()
    batch = config.max_batch_size
    print(f"machine: {describe_stack()}; backlog {args.events} page views, {args.per_job} per job, "
          f"{args.sessions} sessions; worker batches min {config.min_batch_size} max {batch} "
          f"messages, max_time_in_buffer {config.max_time_in_buffer:g}s")  # fmt: skip

    if args.warmup:
        # The JVMs (Pulsar, Elasticsearch) compile their hot paths in the first rounds: uncounted.
        for kind in ("drain", "raw"):
            backlog = make_backlog(f"w{kind}", events=args.events, per_job=args.per_job, sessions=args.sessions)
            if kind == "drain":
                rate = drain(backlog, replicas=1, directory=directory, tag=f"w{kind}")
            else:
                rate = raw(backlog, batch=batch)
            print(f"warm-up: {kind:5s} {rate:8.0f} events/s (uncounted)")
    rates: dict[str, list[float]] = {"drain": [], "raw": []}
    for index in range(2 * args.rounds):
        kind = "drain" if index % 4 in (0, 3) else "raw"
        tag = f"r{index}"
        backlog = make_backlog(tag, events=args.events, per_job=args.per_job, sessions=args.sessions)
        if kind == "drain":
            rate = drain(backlog, replicas=1, directory=directory, tag=tag)
        else:
            rate = raw(backlog, batch=batch)
        rates[kind].append(rate)
        print(f"round {index + 1}: {kind:5s} {rate:8.0f} events/s ({backlog.events} events, "
              f"{len(backlog.messages)} jobs)")  # fmt: skip

    drained, written = median(rates["drain"]), median(rates["raw"])
    row = figure("background drain (events/s)", drained, "events/s", baseline=written, baseline_label="raw bulk",
                 target=(">=", 0.7), note=f"medians of {args.rounds} drain and {args.rounds} raw rounds, ABBA; "
                 f"{args.events} events in jobs of {args.per_job}, batches of {batch}")  # fmt: skip
    rows = [row]
    scale: dict[int, float] = {}
    for replicas in [int(n) for n in args.replicas.split(",") if n.strip()]:
        tag = f"x{replicas}"
        backlog = make_backlog(tag, events=args.events, per_job=args.per_job, sessions=args.sessions)
        scale[replicas] = drain(backlog, replicas=replicas, directory=directory, tag=tag)
        print(f"scale-out: {replicas} background worker(s) {scale[replicas]:8.0f} events/s")
    one = scale.get(1)
    for replicas, rate in scale.items():
        if replicas == 1:
            continue
        row = figure(f"drain with {replicas} background replicas", rate, "events/s", baseline=one,
                     baseline_label="1 replica",
                     note=f"{os.cpu_count()} cores shared by the workers, the store and the broker: "
                     "scale-out is bounded by the cores, not by the workers")  # fmt: skip
        rows.append(row)
    report(rows, args.json, rates=rates, scale=scale)


if __name__ == "__main__":
    main()
