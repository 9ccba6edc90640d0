"""What log shipping costs a background worker, on this machine, on the embedded defaults.

On a fresh SQLite database under var/bench-logs/, each round queues --messages storage
jobs on system/functions, starts `run_worker background` with LOG_SHIPPING on or off, and
times it from its "started" line until every event is stored. Rounds alternate on/off in
ABBA order (on off off on ...), so a machine that slows down or speeds up during the run
weighs on both alike. Prints messages/s per round, the median of each setting, the ratio
on/off, and how many lines were shipped.

The worker runs at DEBUG with small batches by default: the most log lines per message
(the `Invoked ... Finished in` lines, the Saved lines of every batch), as when someone
troubleshoots with the log page. At INFO with the default batch sizes it logs far less.

    .venv/bin/python bench/logging_cost.py [--rounds 8] [--messages 2000] [--batch 20] [--level DEBUG]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench-logs"
ROUND_TIMEOUT = 120

os.environ["DJANGO_SETTINGS_MODULE"] = "tracardi_site.settings"
os.environ.setdefault("DATABASE_URL", f"sqlite:///{BENCH_DIR / 'bench.sqlite3'}")
os.environ.setdefault("TENANT", f"benchlogs{int(time.time())}")
sys.path.insert(0, str(ROOT))


def event_job(now: str) -> dict:
    from storage.jobs import StorageJob

    event_id = str(uuid.uuid4())
    event = {
        "id": event_id,
        "type": "page-view",
        "source": {"id": "bench"},
        "session": None,
        "profile": None,
        "properties": {"id": "string", "category": "string"},
        "metadata": {"time": {"insert": now}},
    }
    return StorageJob(job_id=str(uuid.uuid4()), profile=None, session=None, events=[event]).to_payload()


def queue_messages(count: int) -> None:
    from django.utils import timezone

    from queueing.broker import OutgoingMessage, get_broker
    from queueing.topics import FUNCTIONS

    broker = get_broker()
    now = timezone.now().isoformat()
    for start in range(0, count, 500):
        broker.publish(
            [
                OutgoingMessage(topic=FUNCTIONS, key=f"k{i}", payload=event_job(now))
                for i in range(start, min(start + 500, count))
            ]
        )


def run_round(*, shipping: bool, messages: int, expected_total: int, index: int) -> float:
    """Queues the messages, runs a worker until they are stored; returns messages/s."""
    from storage.store import get_store

    queue_messages(messages)
    log = BENCH_DIR / f"worker-{index}-{'on' if shipping else 'off'}.log"
    env = {**os.environ, "LOG_SHIPPING": "true" if shipping else "false", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "run_worker", "background"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + ROUND_TIMEOUT
        while "started (pid" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"bench: the worker did not start; see {log}")
            time.sleep(0.01)
        started = time.perf_counter()
        store = get_store()
        while store.count("event") < expected_total:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: the worker did not store every event within {ROUND_TIMEOUT}s; see {log}")
            time.sleep(0.02)
        return messages / (time.perf_counter() - started)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise SystemExit(f"bench: the worker did not stop within 60s of SIGTERM; see {log}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8, help="rounds in all, half with shipping on")
    parser.add_argument("--messages", type=int, default=2000, help="storage jobs (one event each) per round")
    parser.add_argument("--batch", type=int, default=20, help="the worker's max_batch_size")
    parser.add_argument("--level", default="DEBUG", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args()

    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    BENCH_DIR.mkdir(parents=True)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from console.models import LogLine
    from queueing.models import WorkerSettings

    call_command("migrate", verbosity=0)
    WorkerSettings.objects.update_or_create(
        worker_type="background",
        defaults={
            "logging_level": args.level,
            "min_batch_size": 1,
            "max_batch_size": args.batch,
            "max_time_in_buffer": 0.1,
        },
    )
    print(
        f"machine: {os.cpu_count()} cores; {args.rounds} rounds of {args.messages} messages; background worker at "
        f"{args.level}, batches of at most {args.batch}; database: {os.environ['DATABASE_URL']}; "
        f"broker: {settings.QUEUE_BACKEND}; store: {settings.STORE_BACKEND}"
    )
    rates: dict[bool, list[float]] = {True: [], False: []}
    total = 0
    for index in range(args.rounds):
        shipping = index % 4 in (0, 3)  # on off off on, on off off on ...
        total += args.messages
        lines_before = LogLine.objects.count()
        rate = run_round(shipping=shipping, messages=args.messages, expected_total=total, index=index)
        rates[shipping].append(rate)
        shipped = LogLine.objects.count() - lines_before
        print(f"round {index + 1}: shipping {'on ' if shipping else 'off'}  {rate:8.0f} messages/s  "
              f"({shipped} log lines shipped)")  # fmt: skip
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"\nmedian messages/s: shipping on {on:.0f}, off {off:.0f}; ratio on/off {on / off:.3f}")
    print(f"log lines in the table: {LogLine.objects.count()}; worker logs: {BENCH_DIR}")


if __name__ == "__main__":
    main()
