"""Would an event-loop server make a queued /track request cheaper on Pulsar? Two ways for a
process to wait for Pulsar's confirmation, side by side on the running development Pulsar:

- threads (what the API does under gunicorn's gthread workers): WEB_THREADS threads per
  process, each does about --work-us of Python (standing for the request's own work) and
  then the client's blocking send, which waits for the confirmation in C++;
- event loop (what an asyncio server would do): one thread runs --tasks tasks; each does
  the same work, then send_async, and awaits a future that the client's callback resolves
  with loop.call_soon_threadsafe.

Each round runs --processes processes of one way at a time (like gunicorn -w 2), then of
the other, the order alternating from round to round. The processes connect and create
their producers first; the parent then gives them one start time. For each way it reports
messages/s, the CPU time of the sending processes per message and that of the Pulsar JVM
(its pid file from devtools/services/), both over the sending window only, and the ratios
event loop / threads (median of the rounds' ratios). The Python work per message is
measured in the senders and printed. One non-partitioned topic with the API's producer
settings (no batching: the backlog API counts messages), deleted at exit. Only Pulsar is
needed:

    devtools/services/pulsar.sh start
    .venv/bin/python bench/pulsar_send_model.py --stack real [--rounds 4] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import requests
from benchlib import REAL_STACK, add_common_arguments, cpu_by_pid, figure, median, report, service_pids

WAYS = ("threads", "event loop")
MESSAGE = b"x" * 3000  # about a 10-event collect message


def spin(iterations: int) -> float:
    """Stands for the request's own Python work (holds the GIL like it); returns the CPU
    seconds this thread spent on it."""
    started = time.thread_time()
    total = 0
    for i in range(iterations):
        total += i * i
    return time.thread_time() - started


def iterations_for(microseconds: float) -> int:
    """The spin() iterations that take about `microseconds` of CPU (the fastest of three
    probes of 50 ms, after a first one that warms up)."""
    probe = 1_000_000
    spin(probe)
    fastest = min(spin(probe) for _ in range(3))
    return max(1, int(probe * microseconds / (fastest * 1e6)))


class Sender:
    """One sending process's producer and tallies (per thread or task: no shared counter)."""

    def __init__(self, args: argparse.Namespace) -> None:
        import pulsar

        self.pulsar = pulsar
        self.client = pulsar.Client(
            os.environ.get("PULSAR_SERVICE_URL", REAL_STACK["PULSAR_SERVICE_URL"]),
            operation_timeout_seconds=10,
            logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
        )
        self.producer = self.client.create_producer(
            args.topic, send_timeout_millis=10_000, block_if_queue_full=True, batching_enabled=False
        )
        self.iterations = args.iterations
        self.sent: list[int] = []
        self.work: list[float] = []
        self.errors: list[str] = []

    def _slot(self) -> int:
        self.sent.append(0)
        self.work.append(0.0)
        return len(self.sent) - 1

    def _key(self, slot: int) -> str:
        return f"{os.getpid()}-{slot}-{self.sent[slot] % 50}"

    def with_threads(self, threads: int, stop: float) -> None:
        def send(slot: int) -> None:
            try:
                while time.time() < stop:
                    self.work[slot] += spin(self.iterations)
                    self.producer.send(MESSAGE, partition_key=self._key(slot))
                    self.sent[slot] += 1
            except self.pulsar.PulsarException as exc:
                self.errors.append(str(exc))

        workers = [threading.Thread(target=send, args=(self._slot(),)) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    async def with_event_loop(self, tasks: int, stop: float) -> None:
        loop = asyncio.get_running_loop()

        async def send(slot: int) -> None:
            while time.time() < stop:
                self.work[slot] += spin(self.iterations)
                confirmed = loop.create_future()
                self.producer.send_async(
                    MESSAGE,
                    lambda result, _id, future=confirmed: loop.call_soon_threadsafe(future.set_result, result),
                    partition_key=self._key(slot),
                )
                result = await confirmed
                if result != self.pulsar.Result.Ok:
                    self.errors.append(str(result))
                    return
                self.sent[slot] += 1

        await asyncio.gather(*(send(self._slot()) for _ in range(tasks)))


def child(args: argparse.Namespace) -> None:
    """One sending process: says it is ready, reads the start time from its standard input,
    sends for --seconds, prints its figures (before closing the client, so the parent reads
    Pulsar's CPU over the sending window only) and exits 1 if a send failed."""
    sender = Sender(args)
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line:  # the parent gave up before the start
        sys.exit(1)
    start = float(line)
    time.sleep(max(0.0, start - time.time()))
    stop = start + args.seconds
    cpu = time.process_time()
    if args.child == "threads":
        sender.with_threads(args.threads, stop)
    else:
        asyncio.run(sender.with_event_loop(args.tasks, stop))
    print(json.dumps({"sent": sum(sender.sent), "cpu": time.process_time() - cpu, "work": sum(sender.work),
                      "errors": sender.errors[:3]}), flush=True)  # fmt: skip
    sender.client.close()
    sys.exit(1 if sender.errors else 0)


def run_way(way: str, args: argparse.Namespace, pulsar_pid: int) -> dict[str, float]:
    options = {"--child": way, "--topic": args.topic, "--seconds": args.seconds, "--iterations": args.iterations,
               "--threads": args.threads, "--tasks": args.tasks}  # fmt: skip
    command = [sys.executable, __file__, *(str(part) for pair in options.items() for part in pair)]
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(args.processes)
    ]
    try:
        for process in processes:
            if process.stdout.readline().strip() != "ready":
                raise SystemExit(f"bench: a {way} process could not connect to Pulsar (exit {process.wait()})")
        start = time.time() + 0.5
        for process in processes:
            process.stdin.write(f"{start}\n")
            process.stdin.flush()
        time.sleep(max(0.0, start - time.time()))
        jvm_before = cpu_by_pid([pulsar_pid])[pulsar_pid]
        lines = [process.stdout.readline() for process in processes]
        jvm = cpu_by_pid([pulsar_pid])[pulsar_pid] - jvm_before
        if not all(lines):
            raise SystemExit(f"bench: a {way} process ended without its figures")
        results = [json.loads(line) for line in lines]
    finally:
        for process in processes:
            process.stdin.close()  # one still waiting for its start time ends
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    errors = [error for result in results for error in result["errors"]]
    sent = sum(result["sent"] for result in results)
    if errors or not sent:
        raise SystemExit(f"bench: {way}: {sent} messages confirmed; Pulsar refused: {errors or 'none sent'}")
    return {
        "rate": sent / args.seconds,
        "client_us": sum(result["cpu"] for result in results) / sent * 1e6,
        "work_us": sum(result["work"] for result in results) / sent * 1e6,
        "pulsar_us": jvm / sent * 1e6,
    }


def delete_topic(admin: str, name: str) -> None:
    try:
        response = requests.delete(f"{admin}/admin/v2/persistent/public/default/{name}", params={"force": "true"},
                                   timeout=30)  # fmt: skip
        if response.status_code != 404:
            response.raise_for_status()
    except requests.RequestException as exc:  # a failed cleanup must not hide the figures or the error
        print(f"bench: could not delete topic {name}: {exc}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--processes", type=int, default=2, help="sending processes of each way (gunicorn -w)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("WEB_THREADS", "6")),
                        help="threads per process, threads way (WEB_THREADS)")  # fmt: skip
    parser.add_argument("--tasks", type=int, default=16, help="tasks per process, event-loop way")
    parser.add_argument("--work-us", type=float, default=500, help="Python work per message (us of CPU)")
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, help=argparse.SUPPRESS)
    add_common_arguments(parser)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.stack != "real":
        parser.error("this compares two ways of waiting for Pulsar: run with --stack real")
    pulsar_pid = service_pids().get("pulsar")
    if pulsar_pid is None:
        raise SystemExit("bench: no Pulsar of devtools/services/ runs (devtools/services/pulsar.sh start)")
    name = f"bench-send-model-{int(time.time())}"
    args.topic = f"persistent://public/default/{name}"
    args.iterations = iterations_for(args.work_us)
    print(f"{args.processes} processes per way; {args.threads} threads or {args.tasks} tasks each; about "
          f"{args.work_us:g} us of Python per message ({args.iterations} iterations)", flush=True)  # fmt: skip
    found: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    try:
        run_way("threads", args, pulsar_pid)  # warm-up: the topic, the JVM's hot paths
        for index in range(args.rounds):
            for way in WAYS if index % 2 == 0 else reversed(WAYS):
                found[way].append(run_way(way, args, pulsar_pid))
            print(f"round {index + 1}: " + "; ".join(
                f"{way} {found[way][-1]['rate']:,.0f} msg/s, work {found[way][-1]['work_us']:.0f} us, "
                f"senders {found[way][-1]['client_us']:.0f} us, Pulsar {found[way][-1]['pulsar_us']:.0f} us"
                for way in WAYS), flush=True)  # fmt: skip
    finally:
        delete_topic(os.environ.get("PULSAR_ADMIN_URL", REAL_STACK["PULSAR_ADMIN_URL"]), name)

    def row(label: str, key: str, unit: str, note: str = "") -> dict[str, Any]:
        loop, threads = found["event loop"], found["threads"]
        return figure(f"event loop vs threads: {label}", median([r[key] for r in loop]), unit,
                      baseline=median([r[key] for r in threads]), baseline_label="threads", note=note,
                      ratio=median([a[key] / b[key] for a, b in zip(loop, threads, strict=True)]))  # fmt: skip

    work = median([r["work_us"] for way in WAYS for r in found[way]])
    report(
        [
            row("messages/s", "rate", "msg/s"),
            row("senders' CPU per message", "client_us", "us", f"of which the Python work: {work:.0f} us (median)"),
            row("Pulsar's CPU per message", "pulsar_us", "us"),
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
