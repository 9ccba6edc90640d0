"""Throughput of the pipeline on this machine, on the embedded defaults.

Starts gunicorn and the workers (`run_workers`) on a fresh SQLite database under
var/bench/, drives POST /track with wrk (C, so the load generator takes little of the
machine) for a bounded time per phase, waits until the background worker has stored
every accepted event, and prints: events/s accepted by /track, events/s stored end to
end, latency, the stored/accepted ratio (must be 1.000) and the ratios between phases.

    .venv/bin/python bench/track_throughput.py [--seconds 10] [--web-workers 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from benchlib import ensure_wrk, run_wrk, start, stop

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
PORT = 8765
URL = f"http://127.0.0.1:{PORT}"
SOURCE = "bench-source"
DRAIN_TIMEOUT = 300

os.environ["DJANGO_SETTINGS_MODULE"] = "tracardi_site.settings"
os.environ.setdefault("DATABASE_URL", f"sqlite:///{BENCH_DIR / 'bench.sqlite3'}")
# A tenant of its own: on Pulsar and Elasticsearch its topics and indices start empty.
os.environ.setdefault("TENANT", f"bench{int(time.time())}")
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="length of each phase")
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()

    ensure_wrk()
    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    BENCH_DIR.mkdir(parents=True)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from queueing.models import WorkerSettings
    from storage.store import get_store
    from tracking.models import EventSource

    call_command("migrate", verbosity=0)
    EventSource.objects.create(id=SOURCE, name="bench")
    WorkerSettings.objects.filter(worker_type__in=["collector", "background"]).update(enabled=True, replicas=1)
    store = get_store()

    web = start(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "tracardi_site.wsgi",
            "-b",
            f"127.0.0.1:{PORT}",
            "-w",
            str(args.web_workers),
        ],
        BENCH_DIR / "gunicorn.log",
    )
    workers = start([sys.executable, "manage.py", "run_workers"], BENCH_DIR / "workers.log")
    try:
        time.sleep(3)
        print(
            f"machine: {os.cpu_count()} cores; gunicorn workers: {args.web_workers}; wrk connections: "
            f"{args.connections}; {args.seconds}s per phase; database: {os.environ['DATABASE_URL']}; "
            f"broker: {settings.QUEUE_BACKEND}; store: {settings.STORE_BACKEND}"
        )
        phases = [
            ("default, 10 events/request", 10, False),
            ("default, 1 event/request", 1, False),
            ("queue (collector), 10 events/request", 10, True),
        ]
        accepted_total = 0
        figures: dict[str, tuple[float, float]] = {}
        for name, per_request, queue in phases:
            started = time.perf_counter()
            stats = run_wrk(
                URL,
                seconds=args.seconds,
                connections=args.connections,
                per_request=per_request,
                queue=queue,
                sessions=500,
            )
            ok_requests = stats["requests"] - stats["non2xx"] - stats["socket_errors"]
            events = int(ok_requests) * per_request
            accepted_total += events
            deadline = time.monotonic() + DRAIN_TIMEOUT
            # Like with like: the page views wrk sent, not the system events sessions add.
            while store.count("event", type="page-view") < accepted_total:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench: the workers did not store every event within {DRAIN_TIMEOUT}s")
                time.sleep(0.2)
            stored_seconds = time.perf_counter() - started
            figures[name] = (events / stats["seconds"], events / stored_seconds)
            print(f"\n[{name}]")
            print(f"  requests: {int(stats['requests'])} ({int(stats['non2xx'])} non-2xx, "
                  f"{int(stats['socket_errors'])} socket errors); latency p50 {stats['p50_ms']:.1f} ms, "
                  f"p99 {stats['p99_ms']:.1f} ms")  # fmt: skip
            rate = ok_requests / stats["seconds"]
            print(f"  accepted by /track: {figures[name][0]:8.0f} events/s ({rate:.0f} requests/s)")
            print(f"  stored end to end:  {figures[name][1]:8.0f} events/s "
                  f"(the last stored {stored_seconds - stats['seconds']:.2f}s after the load stopped)")  # fmt: skip
        stored = store.count("event", type="page-view")
        # wrk does not count the requests still in flight when it stops; the server stores them.
        print(f"\nstored/accepted events: {stored}/{accepted_total} = {stored / max(accepted_total, 1):.3f} "
              "(>= 1.000: nothing accepted was lost; above 1 by requests in flight at the end)")  # fmt: skip
        base_accepted, base_stored = figures[phases[0][0]]
        for name, (accepted, stored_rate) in figures.items():
            print(f"ratio to the first phase: {name:38s} accepted {accepted / base_accepted:.2f}  "
                  f"stored {stored_rate / base_stored:.2f}")  # fmt: skip
    finally:
        stop(workers)
        stop(web)


if __name__ == "__main__":
    main()
