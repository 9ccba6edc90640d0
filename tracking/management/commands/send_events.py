from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tracking.loadgen import send_events


class Command(BaseCommand):
    help = "Sends demo traffic to /track and prints the achieved events per second."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--count", type=int, default=1000, help="Events to send in all.")
        parser.add_argument("--events-per-request", type=int, default=10)
        parser.add_argument(
            "--mode",
            choices=["default", "queue"],
            default="default",
            help="default: processed in the API; queue: options.queue=true (collector).",
        )
        parser.add_argument("--source", default="locust-test", help="Event source id.")
        parser.add_argument("--concurrency", type=int, default=4, help="Parallel clients.")
        parser.add_argument("--sessions", type=int, default=100, help="Distinct sessions (visitors).")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, **o: object) -> None:
        for name in ("count", "events_per_request", "concurrency", "sessions"):
            if o[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        result = send_events(
            url=o["url"],
            source_id=o["source"],
            count=o["count"],
            events_per_request=o["events_per_request"],
            queue=o["mode"] == "queue",
            concurrency=o["concurrency"],
            sessions=o["sessions"],
            progress=not o["no_progress"],
        )
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items(), key=str))
        self.stdout.write(
            f"Sent {result.events} events in {result.requests} requests in {result.seconds:.2f}s: "
            f"{result.events_per_second:.0f} events/s, {result.requests / result.seconds:.0f} requests/s "
            f"(statuses {statuses})"
        )
        if result.first_error:
            raise CommandError(f"Some requests failed; first error: {result.first_error}")
