"""Workflow runs per second, and how long an event takes to reach a webhook, on this machine.

Starts gunicorn and `run_workers` (background and workflow workers, the django-q2
cluster) on a fresh SQLite database under var/bench-workflow/, with a local HTTP server as
the CRM. Two phases with the same traffic (purchase events of total 150, 10 per request,
rotating sessions):

1. baseline: no workflow; events/s stored by the background worker;
2. the README's example workflow (tag, segment, remote call), with `"event": "event@id"`
   added to the call's body so each call names its event: workflow runs/s, and for each
   event the time from /track's answer to the webhook's receipt (p50/p95/p99; it includes
   storing the event, the run and the outbox), and from the run's start to the receipt;
3. paced: one event per request at a rate the pipeline keeps up with (default 10/s): the
   /track answered -> webhook received latency without a backlog in front of it.

Runs/s is printed as a ratio to the baseline's stored events/s: the machine is shared,
its absolute speed varies; the ratio says what the workflow stage costs.

    .venv/bin/python bench/workflow_throughput.py [--events 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from benchlib import start, stop

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench-workflow"
PORT = 8766
URL = f"http://127.0.0.1:{PORT}"
SOURCE = "locust-test"
TIMEOUT = 600

os.environ["DJANGO_SETTINGS_MODULE"] = "tracardi_site.settings"
os.environ.setdefault("DATABASE_URL", f"sqlite:///{BENCH_DIR / 'bench.sqlite3'}")
os.environ.setdefault("TENANT", f"benchwf{int(time.time())}")
sys.path.insert(0, str(ROOT))


class Receiver:
    """The CRM: records when each event's call arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with receiver.lock:
                    receiver.arrived.setdefault(body["event"], time.time())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def send(events: int, *, phase: str) -> dict[str, float]:
    """Posts the events, 10 per request from 8 threads; returns event id -> time answered."""
    answered: dict[str, float] = {}
    lock = threading.Lock()

    def post(index: int) -> None:
        body = {
            "source": {"id": SOURCE},
            "session": {"id": f"{phase}-session-{index % 200}"},
            "events": [{"type": "purchase", "properties": {"total": 150}} for _ in range(10)],
        }
        response = requests.post(f"{URL}/track", json=body, timeout=60)
        response.raise_for_status()
        now = time.time()
        with lock:
            answered.update((event_id, now) for event_id in response.json()["events"])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post, range(events // 10)))
    return answered


def send_paced(rate: float, seconds: float) -> dict[str, float]:
    """One event per request at `rate` requests/s: a load the pipeline keeps up with, so the
    latency measured is the pipeline's, not a queue's."""
    answered: dict[str, float] = {}
    with requests.Session() as http:
        began = time.monotonic()
        for index in range(int(rate * seconds)):
            time.sleep(max(0.0, began + index / rate - time.monotonic()))
            body = {
                "source": {"id": SOURCE},
                "session": {"id": f"paced-session-{index % 50}"},
                "events": [{"type": "purchase", "properties": {"total": 150}}],
            }
            response = http.post(f"{URL}/track", json=body, timeout=60)
            response.raise_for_status()
            answered[response.json()["events"][0]] = time.time()
    return answered


def wait(what: str, done) -> float:
    deadline = time.monotonic() + TIMEOUT
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not happen within {TIMEOUT}s")
        time.sleep(0.2)
    return time.time()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="events per burst phase (a multiple of 10)")
    parser.add_argument("--rate", type=float, default=10.0, help="events/s of the paced phase")
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    args = parser.parse_args()
    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    BENCH_DIR.mkdir(parents=True)

    import django

    django.setup()
    from django.core.management import call_command

    from queueing.models import WorkerSettings
    from storage.models import EventRecord
    from tracking.models import EventSource
    from workflows.definitions import import_workflow
    from workflows.models import Workflow, WorkflowRun

    call_command("migrate", verbosity=0)
    EventSource.objects.create(id=SOURCE, name="bench")
    WorkerSettings.objects.filter(worker_type="collector").update(enabled=False)
    WorkerSettings.objects.filter(worker_type__in=["background", "workflow"]).update(enabled=True, replicas=1)
    receiver = Receiver()
    example = json.loads((ROOT / "bench" / "example_workflow.json").read_text())
    example["nodes"][3]["config"]["url"] = receiver.url
    example["nodes"][3]["config"]["body"]["event"] = "event@id"
    workflow = import_workflow(example, user="bench")
    Workflow.objects.filter(pk=workflow.pk).update(enabled=False)

    web = start(
        [sys.executable, "-m", "gunicorn", "tracardi_site.wsgi", "-b", f"127.0.0.1:{PORT}", "-w", "2"],
        BENCH_DIR / "web.log",
    )
    workers = start([sys.executable, "manage.py", "run_workers"], BENCH_DIR / "workers.log")
    try:
        wait("the API start", lambda: _up())
        print(
            f"machine: {os.cpu_count()} cores; {args.events} events per phase; database: {os.environ['DATABASE_URL']}"
        )

        began = time.time()
        send(args.events, phase="baseline")
        stored_at = wait(
            "storing the baseline", lambda: EventRecord.objects.filter(type="purchase").count() >= args.events
        )
        baseline = args.events / (stored_at - began)
        print(f"\n[baseline, no workflow] stored {baseline:.0f} events/s")

        Workflow.objects.filter(pk=workflow.pk).update(enabled=True)
        time.sleep(2.5)  # the workers cache the workflows for up to 2 s
        began = time.time()
        answered = send(args.events, phase="workflow")
        ran_at = wait("the runs", lambda: WorkflowRun.objects.count() >= args.events)
        wait("the webhook calls", lambda: len(receiver.arrived) >= args.events)
        runs_per_second = args.events / (ran_at - began)
        end_to_end = [receiver.arrived[e] - answered[e] for e in answered if e in receiver.arrived]
        starts = dict(WorkflowRun.objects.values_list("event_id", "started_at"))
        outbox = [
            receiver.arrived[e] - starts[e].timestamp() for e in answered if e in starts and e in receiver.arrived
        ]
        print(
            f"[example workflow] {runs_per_second:.0f} runs/s = "
            f"{runs_per_second / baseline:.2f} x the baseline's stored events/s"
        )
        for name, values in (
            ("/track answered -> webhook received", end_to_end),
            ("run started -> webhook received", outbox),
        ):
            print(f"  {name}: p50 {percentile(values, 0.5):.2f} s, p95 {percentile(values, 0.95):.2f} s, "
                  f"p99 {percentile(values, 0.99):.2f} s")  # fmt: skip
        print(
            f"  calls received: {len(receiver.arrived)} for {len(answered)} events "
            " (the receiver counts distinct events)"
        )

        paced = send_paced(args.rate, args.paced_seconds)
        wait("the paced calls", lambda: all(e in receiver.arrived for e in paced))
        latencies = [receiver.arrived[e] - paced[e] for e in paced]
        print(f"\n[paced: {args.rate:g} events/s for {args.paced_seconds:g} s, one per request]")
        print(f"  /track answered -> webhook received: p50 {percentile(latencies, 0.5):.2f} s, "
              f"p95 {percentile(latencies, 0.95):.2f} s, p99 {percentile(latencies, 0.99):.2f} s")  # fmt: skip
    finally:
        stop(workers)
        stop(web)


def _up() -> bool:
    try:
        return requests.options(f"{URL}/track", timeout=1).status_code == 200
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
