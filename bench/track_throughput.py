"""Throughput of the embedded pipeline on this machine.

Starts gunicorn and the workers on a fresh SQLite database under var/bench/, sends
bounded demo traffic with `send_events`, waits until the background worker has stored
everything, and prints events per second accepted by /track, stored by the workers,
and their ratios. Every phase is bounded in count and time.

    .venv/bin/python bench/track_throughput.py [--events 20000] [--web-workers 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
PORT = 8765
URL = f"http://127.0.0.1:{PORT}"
SOURCE = "bench-source"
PHASE_TIMEOUT = 300


def manage(*args: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, **kwargs)


def start(args: list[str], env: dict[str, str], log: str) -> subprocess.Popen:
    out = open(BENCH_DIR / log, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def stored_events(env: dict[str, str]) -> int:
    result = manage(
        "shell", "-c", "from storage.store import get_store; print(get_store().count('event'))",
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    return int(result.stdout.strip().splitlines()[-1])


def wait_stored(env: dict[str, str], expected: int, started: float) -> float:
    deadline = time.monotonic() + PHASE_TIMEOUT
    while time.monotonic() < deadline:
        if stored_events(env) >= expected:
            return time.perf_counter() - started
        time.sleep(0.5)
    raise SystemExit(f"bench: the workers did not store {expected} events within {PHASE_TIMEOUT}s")


def send(env: dict[str, str], *, events: int, per_request: int, mode: str, concurrency: int) -> tuple[float, str]:
    started = time.perf_counter()
    result = manage(
        "send_events", "--url", URL, "--source", SOURCE, "--count", str(events),
        "--events-per-request", str(per_request), "--mode", mode, "--concurrency", str(concurrency),
        "--sessions", "500", "--no-progress",
        env=env, capture_output=True, text=True, timeout=PHASE_TIMEOUT,
    )  # fmt: skip
    return started, result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    BENCH_DIR.mkdir(parents=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tracardi_site.settings",
        "DATABASE_URL": f"sqlite:///{BENCH_DIR / 'bench.sqlite3'}",
        "PYTHONUNBUFFERED": "1",
    }
    manage("migrate", "--no-input", "-v", "0", env=env)
    manage(
        "shell", "-c",
        "from tracking.models import EventSource; from queueing.models import WorkerSettings as W;"
        f"EventSource.objects.create(id='{SOURCE}', name='bench');"
        "W.objects.filter(worker_type='collector').update(enabled=True, replicas=1);"
        "W.objects.filter(worker_type='background').update(enabled=True, replicas=1)",
        env=env,
    )  # fmt: skip
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
        env,
        "gunicorn.log",
    )
    workers = start([sys.executable, "manage.py", "run_workers"], env, "workers.log")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.options(f"{URL}/track", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        print(f"machine: {os.cpu_count()} cores; gunicorn workers: {args.web_workers}; "
              f"client concurrency: {args.concurrency} (the load generator shares the machine)")  # fmt: skip
        total = 0
        figures = {}
        phases = [
            ("default, 10 events/request", args.events, 10, "default"),
            ("default, 1 event/request", args.events // 5, 1, "default"),
            ("queue (collector), 10 events/request", args.events, 10, "queue"),
        ]
        for name, events, per_request, mode in phases:
            started, report = send(env, events=events, per_request=per_request, mode=mode, concurrency=args.concurrency)
            accepted_seconds = time.perf_counter() - started
            total += events
            stored_seconds = wait_stored(env, total, started)
            figures[name] = (events / accepted_seconds, events / stored_seconds)
            print(f"\n[{name}] {report}")
            print(f"  accepted by /track: {events / accepted_seconds:8.0f} events/s")
            print(f"  stored end to end:  {events / stored_seconds:8.0f} events/s "
                  f"(all {events} stored {stored_seconds - accepted_seconds:.2f}s after the last answer)")  # fmt: skip
        stored = stored_events(env)
        print(f"\nstored/accepted events: {stored}/{total} = {stored / total:.3f}")
        base = figures["default, 10 events/request"]
        for name, (accepted, stored_rate) in figures.items():
            print(
                f"ratio to default/10: {name:40s} accepted {accepted / base[0]:.2f}  stored {stored_rate / base[1]:.2f}"
            )
    finally:
        stop(workers)
        stop(web)


if __name__ == "__main__":
    main()
