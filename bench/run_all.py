"""Runs the throughput benchmarks of issue 13 and prints ONE table of their figures.

    .venv/bin/python bench/run_all.py                 # embedded defaults (make bench), < 10 minutes
    .venv/bin/python bench/run_all.py --stack real    # Pulsar + Elasticsearch + MySQL (make bench STACK=real)

Each script runs as its own process with shortened options (each keeps its own options for
longer runs), writes its figures as JSON under var/bench-results/<stack>/, and its output
to a .log beside it. The table: each figure, its baseline (measured in the same run,
alternating with it, unless the note says otherwise), the ratio, the target and PASS/FAIL.

--stack real starts the servers of devtools/services/ whose port does not answer (and
stops those at the end); servers already running, whoever started them, are used as they
are. The real stack's api_ratio warms the JVMs up first and measures the embedded defaults
beside it, in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

from benchlib import REAL_STACK, ROOT, SERVICES, VAR, figure, table

BENCH = ROOT / "bench"


def steps(stack: str) -> list[tuple[str, list[str]]]:
    if stack == "real":
        return [
            ("api_ratio", ["--rounds", "3", "--seconds", "5", "--warmup", "60"]),
            ("drain_ratio", ["--events", "50000", "--rounds", "2", "--warmup", "--replicas", "1,2,4"]),
            ("half_load", ["--minutes", "2", "--max-seconds", "8"]),
        ]
    return [
        # One uncounted pass first: the sessions are registered and the workers' caches warm, so
        # every mode is measured with returning visitors, not the first phase alone paying for new ones.
        ("api_ratio", ["--rounds", "5", "--seconds", "4", "--warmup", "1"]),
        ("publish_cost", ["--rounds", "5", "--commits", "300"]),
        ("store_write_cost", ["--rounds", "5"]),
        ("drain_ratio", ["--events", "60000", "--rounds", "2"]),
        ("half_load", ["--minutes", "2", "--max-seconds", "8"]),
    ]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def services_up() -> list[str]:
    """Starts the real servers that are not answering; returns those it started."""
    started = []
    for service, port in SERVICES.items():
        if port_open(port):
            print(f"run_all: {service} answers on 127.0.0.1:{port}; using it as it is")
            continue
        print(f"run_all: starting {service} (devtools/services/{service}.sh start)")
        subprocess.run([str(ROOT / "devtools" / "services" / f"{service}.sh"), "start"], check=True)
        started.append(service)
    return started


def services_down(started: list[str]) -> None:
    for service in reversed(started):
        subprocess.run([str(ROOT / "devtools" / "services" / f"{service}.sh"), "stop"], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["embedded", "real"], default="embedded")
    parser.add_argument("--only", default="", help="comma-separated scripts to run (default: all)")
    parser.add_argument("--keep-services", action="store_true", help="do not stop the servers this run started")
    args = parser.parse_args()
    results = VAR / "bench-results" / args.stack
    results.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.stack == "real":
        env.update({k: v for k, v in REAL_STACK.items() if k not in os.environ})

    began = time.monotonic()
    started = services_up() if args.stack == "real" else []
    rows: list[dict] = []
    try:
        for name, options in steps(args.stack):
            if args.only and name not in args.only.split(","):
                continue
            out = results / f"{name}.json"
            out.unlink(missing_ok=True)
            command = [sys.executable, str(BENCH / f"{name}.py"), "--stack", args.stack, "--json", str(out), *options]
            print(f"\n=== {name} {' '.join(options)}", flush=True)
            step_began = time.monotonic()
            with (results / f"{name}.log").open("w") as log:
                process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           text=True)  # fmt: skip
                for line in process.stdout:
                    print(line, end="", flush=True)
                    log.write(line)
                process.wait()
            print(f"=== {name}: {time.monotonic() - step_began:.0f}s", flush=True)
            if process.returncode or not out.exists():
                row = figure(f"{name}: did not finish", float("nan"), "",
                             note=f"exit status {process.returncode}; see {results / (name + '.log')}")  # fmt: skip
                row.update({"target": "script failed", "pass": False})
                rows.append(row)
                continue
            rows += json.loads(out.read_text())["figures"]
    finally:
        if started and not args.keep_services:
            services_down(started)

    elapsed = time.monotonic() - began
    header = (
        f"\n{'=' * 20} bench {args.stack} stack: {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"{elapsed / 60:.1f} min {'=' * 20}"
    )
    text = header + "\n" + table(rows)
    print(text)
    (results / "table.txt").write_text(text + "\n")
    (results / "figures.json").write_text(json.dumps(rows, indent=2, default=str))
    failed = [row["figure"] for row in rows if row["pass"] is False]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} figures pass or are reported only; {len(failed)} FAIL")


if __name__ == "__main__":
    main()
