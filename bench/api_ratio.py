"""/track against a bare Django endpoint on the same server: the API's own cost, as ratios.

Starts gunicorn (`-w 2`, the project plus POST /bare from bench/bare.py) on a fresh SQLite
database under var/bench-api/, no workers running (the queue only grows), and drives it with
wrk (-t2 -c16, 200 rotating sessions per connection) in alternating rounds: bare,
queue mode and default mode with 10 events per request, then with 1 event per request.
Each figure is requests/s divided by the bare endpoint's requests/s measured in the same
round, so the machine's noise cancels; the table shows the median ratio of the rounds and
the targets.

    .venv/bin/python bench/api_ratio.py [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests
from benchlib import ensure_wrk, start, stop

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench-api"
PORT = 8767
URL = f"http://127.0.0.1:{PORT}"
SOURCE = "bench-source"

# (name, path, events per request, queue, target ratio to the bare endpoint or None)
PHASES = [
    ("bare endpoint, 10 events", "/bare", 10, False, None),
    ("queue mode, 10 events", "/track", 10, True, 0.5),
    ("default mode, 10 events", "/track", 10, False, 0.3),
    ("queue mode, 1 event", "/track", 1, True, 0.3),
    ("default mode, 1 event", "/track", 1, False, 0.3),
]


def wrk_round(wrk: str, *, path: str, per_request: int, queue: bool, seconds: int) -> dict[str, float]:
    result = subprocess.run(
        [wrk, "-t2", "-c16", f"-d{seconds}s", "--timeout", "10s", "-s", str(ROOT / "bench" / "track.lua"), URL,
         "--", str(per_request), SOURCE, "true" if queue else "false", path, "200"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(row for row in result.stdout.splitlines() if row.startswith("WRK "))
    stats = {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", line)}
    stats["ok_per_second"] = (stats["requests"] - stats["non2xx"] - stats["socket_errors"]) / stats["seconds"]
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--gunicorn", default="-w 2", help="gunicorn worker options, e.g. '-w 2 --threads 8'")
    args = parser.parse_args()
    wrk = ensure_wrk()
    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    BENCH_DIR.mkdir(parents=True)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tracardi_site.settings",
           "DATABASE_URL": f"sqlite:///{BENCH_DIR / 'bench.sqlite3'}"}  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from tracking.models import EventSource; from queueing.models import WorkerSettings;"
         f"EventSource.objects.create(id='{SOURCE}', name='bench');"
         "WorkerSettings.objects.filter(worker_type='collector').update(enabled=True)"],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    web = start(
        [sys.executable, "-m", "gunicorn", "bench.bare:application", "-b", f"127.0.0.1:{PORT}",
         *args.gunicorn.split()],
        BENCH_DIR / "gunicorn.log", env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.options(f"{URL}/track", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("bench: gunicorn did not start; see var/bench-api/gunicorn.log")
            time.sleep(0.2)
        print(f"machine: {os.cpu_count()} cores; gunicorn {args.gunicorn}; wrk -t2 -c16; "
              f"{args.rounds} rounds of {args.seconds}s per phase, alternating")  # fmt: skip
        ratios: dict[str, list[float]] = {name: [] for name, *_ in PHASES}
        rates: dict[str, list[float]] = {name: [] for name, *_ in PHASES}
        failures: dict[str, float] = {name: 0 for name, *_ in PHASES}
        for _ in range(args.rounds):
            bare = None
            for name, path, per_request, queue, _target in PHASES:
                stats = wrk_round(wrk, path=path, per_request=per_request, queue=queue, seconds=args.seconds)
                bare = bare or stats["ok_per_second"]
                rates[name].append(stats["ok_per_second"])
                ratios[name].append(stats["ok_per_second"] / bare)
                failures[name] += stats["non2xx"] + stats["socket_errors"]
        print(f"\n{'figure':32s} {'requests/s':>11s} {'bare req/s':>11s} {'ratio':>6s} {'target':>7s}  result")
        for name, _path, _n, _q, target in PHASES:
            ratio = statistics.median(ratios[name])
            verdict = "-" if target is None else ("PASS" if ratio >= target else "FAIL")
            print(f"{name:32s} {statistics.median(rates[name]):11.0f} {statistics.median(rates[PHASES[0][0]]):11.0f} "
                  f"{ratio:6.2f} {'' if target is None else f'>= {target}':>7s}  {verdict}"
                  + (f"  ({int(failures[name])} non-2xx)" if failures[name] else ""))  # fmt: skip
    finally:
        stop(web)


if __name__ == "__main__":
    main()
