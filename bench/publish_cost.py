"""The CPU of one group commit of the database broker on SQLite: the engine's plain sqlite3
writer (tracardi_site/sqlite/direct.py, what the broker uses) against the same rows written
through Django's `transaction.atomic` (what it used before, and still uses on MySQL).

In one process, no server: alternating rounds of --commits transactions of --group
messages each (a 10-event collect message each; under gunicorn a group holds about 2
requests), CPU time per transaction (process time: the write, the commit and the
fdatasync's own CPU; the disk's wait is not CPU). Both write to the same fresh database.

    .venv/bin/python bench/publish_cost.py [--rounds 5] [--commits 500] [--group 2]
"""

from __future__ import annotations

import argparse
import time

from benchlib import add_common_arguments, figure, median, prepare, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--group", type=int, default=2, help="messages per transaction")
    add_common_arguments(parser)
    args = parser.parse_args()
    if args.stack != "embedded":
        parser.error("the direct writer is SQLite's: run with --stack embedded")
    prepare("bench-publish", args.stack)

    import orjson
    from django.db import transaction

    from queueing.backends.database import NewMessage, commit_messages, write_messages
    from queueing.topics import COLLECTOR

    events = [{"type": "page-view", "properties": {"id": str(i), "category": "demo"}} for i in range(10)]
    payload = orjson.dumps({"v": 1, "kind": "collect", "payload": {"events": events}, "pad": "x" * 2000}).decode()
    rows = [NewMessage(COLLECTOR.name, i % 32, COLLECTOR.subscription, f"k{i}", payload) for i in range(args.group)]

    def through_django() -> None:
        with transaction.atomic():
            write_messages(rows)

    ways = {"django": through_django, "direct": lambda: commit_messages(rows)}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for index in range(args.rounds):
        for name, commit in ways.items() if index % 2 == 0 else reversed(ways.items()):
            started = time.process_time()
            for _ in range(args.commits):
                commit()
            cpu[name].append((time.process_time() - started) / args.commits * 1e6)
        print(f"round {index + 1}: " + ", ".join(f"{name} {cpu[name][-1]:.0f} us" for name in ways), flush=True)
    ratios = [direct / django for direct, django in zip(cpu["direct"], cpu["django"], strict=True)]
    report(
        [
            figure(f"publish CPU per commit of {args.group} messages, direct writer (us)", median(cpu["direct"]),
                   "us", baseline=median(cpu["django"]), baseline_label="Django atomic", ratio=median(ratios),
                   target=("<=", 0.8))
        ],
        args.json,
        cpu_us=cpu,
    )  # fmt: skip


if __name__ == "__main__":
    main()
