from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandParser

from console.logs.handler import start_shipping
from queueing.supervisor import Supervisor
from tracardi_site.observability import own_metrics_dir


class Command(BaseCommand):
    help = "Keeps worker.<type>.replicas processes of each enabled worker type running (local supervisor)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--web",
            metavar="HOST:PORT",
            help="also keep gunicorn serving the API on this address (make run)",
        )

    def handle(self, *args: object, **options: object) -> None:
        # The supervisor starts the whole set of worker processes: their metric files start
        # empty, and every worker it spawns writes to <METRICS_DIR>/workers.
        own_metrics_dir("workers")
        start_shipping("supervisor")
        web = options.get("web")
        web_command = None
        if web:
            web_command = [
                *(sys.executable, "-m", "gunicorn", "tracardi_site.wsgi", "--bind", str(web)),
                *("--access-logfile", "-", "--graceful-timeout", "30", "--timeout", "90"),
            ]
        Supervisor(web_command=web_command).run()
