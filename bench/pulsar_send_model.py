"""Would an event-loop server make a queued /track request cheaper on Pulsar? The two ways a
process can wait for Pulsar's confirmation, side by side on the running development Pulsar:

- threads (what the API does under gunicorn's gthread workers): WEB_THREADS threads per
  process, each does --work-us of Python (the request's own work) and then the client's
  blocking send, which waits for the confirmation in C++;
- event loop (what an asyncio server would do): one thread runs --tasks tasks; each does
  the same work, then send_async, and awaits a future that the client's callback resolves
  with loop.call_soon_threadsafe.

Each round runs --processes processes of each way (like gunicorn -w 2), one way after the
other, the order alternating from round to round. For each way it reports messages/s, the
CPU time of the sending processes per message and the Pulsar JVM's (its pid file from
devtools/services/), and the ratio event loop / threads of the same round (median of the
rounds). One non-partitioned topic with the API's producer settings (no batching: the
backlog API counts messages), deleted at exit. Only Pulsar is needed:

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

import requests
from benchlib import REAL_STACK, add_common_arguments, cpu_by_pid, figure, median, report, service_pids

WAYS = ("threads", "event loop")


def spin(iterations: int) -> None:
    """Stands for the request's own Python work: holds the GIL like it."""
    total = 0
    for i in range(iterations):
        total += i * i


def iterations_for(microseconds: float) -> int:
    """The spin() iterations that take about `microseconds` of CPU in this process."""
    probe = 200_000
    started = time.process_time()
    spin(probe)
    return max(1, int(probe * microseconds / ((time.process_time() - started) * 1e6)))


def child(args: argparse.Namespace) -> None:
    """One sending process: waits for --start, sends for --seconds, prints its count and CPU."""
    import pulsar

    client = pulsar.Client(
        os.environ.get("PULSAR_SERVICE_URL", REAL_STACK["PULSAR_SERVICE_URL"]),
        operation_timeout_seconds=10,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
    )
    producer = client.create_producer(
        args.topic, send_timeout_millis=10_000, block_if_queue_full=True, batching_enabled=False
    )
    data = b"x" * 3000  # about a 10-event collect message
    sent = [0] * max(args.threads, args.tasks)
    time.sleep(max(0.0, args.start - time.time()))
    stop = args.start + args.seconds
    cpu = time.process_time()

    def sender(index: int) -> None:
        while time.time() < stop:
            spin(args.iterations)
            producer.send(data, partition_key=f"{os.getpid()}-{index}-{sent[index] % 50}")
            sent[index] += 1

    async def event_loop() -> None:
        loop = asyncio.get_running_loop()

        async def task(index: int) -> None:
            while time.time() < stop:
                spin(args.iterations)
                confirmed = loop.create_future()
                producer.send_async(
                    data,
                    lambda result, _id, future=confirmed: loop.call_soon_threadsafe(future.set_result, result),
                    partition_key=f"{os.getpid()}-{index}-{sent[index] % 50}",
                )
                if await confirmed != pulsar.Result.Ok:
                    raise SystemExit(f"Pulsar refused a message: {confirmed.result()}")
                sent[index] += 1

        await asyncio.gather(*(task(i) for i in range(args.tasks)))

    if args.child == "threads":
        workers = [threading.Thread(target=sender, args=(i,)) for i in range(args.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    else:
        asyncio.run(event_loop())
    print(json.dumps({"sent": sum(sent), "cpu": time.process_time() - cpu}), flush=True)
    client.close()


def run_way(way: str, args: argparse.Namespace, iterations: int, pulsar_pid: int) -> dict[str, float]:
    start = time.time() + 3  # the processes connect and create their producers before it
    command = [
        sys.executable,
        __file__,
        "--child",
        way,
        "--topic",
        args.topic,
        "--start",
        str(start),
        "--seconds",
        str(args.seconds),
        "--iterations",
        str(iterations),
        "--threads",
        str(args.threads),
        "--tasks",
        str(args.tasks),
    ]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(args.processes)]
    time.sleep(max(0.0, start - time.time()))
    jvm_before = cpu_by_pid([pulsar_pid])[pulsar_pid]
    results = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"bench: a {way} process exited {process.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    jvm = cpu_by_pid([pulsar_pid])[pulsar_pid] - jvm_before
    sent = sum(r["sent"] for r in results)
    return {
        "rate": sent / args.seconds,
        "client_us": sum(r["cpu"] for r in results) / sent * 1e6,
        "pulsar_us": jvm / sent * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--processes", type=int, default=2, help="sending processes of each way (gunicorn -w)")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("WEB_THREADS", "6")),
        help="threads per process, threads way (WEB_THREADS)",
    )
    parser.add_argument("--tasks", type=int, default=16, help="tasks per process, event-loop way")
    parser.add_argument("--work-us", type=float, default=500, help="Python work per message (us of CPU)")
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
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
    admin = os.environ.get("PULSAR_ADMIN_URL", REAL_STACK["PULSAR_ADMIN_URL"])
    iterations = iterations_for(args.work_us)
    print(
        f"{args.processes} processes per way; {args.threads} threads or {args.tasks} tasks each; "
        f"{args.work_us:g} us of Python per message ({iterations} iterations)",
        flush=True,
    )
    found: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    try:
        run_way("threads", args, iterations, pulsar_pid)  # warm-up: the topic, the JVM's hot paths
        for index in range(args.rounds):
            for way in WAYS if index % 2 == 0 else reversed(WAYS):
                found[way].append(run_way(way, args, iterations, pulsar_pid))
            print(
                f"round {index + 1}: "
                + "; ".join(
                    f"{way} {found[way][-1]['rate']:,.0f} msg/s, client {found[way][-1]['client_us']:.0f} us, "
                    f"Pulsar {found[way][-1]['pulsar_us']:.0f} us"
                    for way in WAYS
                ),
                flush=True,
            )
    finally:
        requests.delete(f"{admin}/admin/v2/persistent/public/default/{name}", params={"force": "true"}, timeout=30)

    def row(label: str, key: str, unit: str) -> dict:
        loop, threads = found["event loop"], found["threads"]
        return figure(
            f"event loop vs threads: {label}",
            median([r[key] for r in loop]),
            unit,
            baseline=median([r[key] for r in threads]),
            baseline_label="threads",
            ratio=median([a[key] / b[key] for a, b in zip(loop, threads, strict=True)]),
        )

    report(
        [
            row("messages/s", "rate", "msg/s"),
            row("sending processes' CPU per message", "client_us", "us"),
            row("Pulsar's CPU per message", "pulsar_us", "us"),
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
