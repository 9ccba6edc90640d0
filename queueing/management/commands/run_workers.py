from __future__ import annotations

from django.core.management.base import BaseCommand

from console.logs.handler import start_shipping
from queueing.supervisor import Supervisor
from tracardi_site.observability import own_metrics_dir


class Command(BaseCommand):
    help = "Keeps worker.<type>.replicas processes of each enabled worker type running (local supervisor)."

    def handle(self, *args: object, **options: object) -> None:
        # The supervisor starts the whole set of worker processes: their metric files start
        # empty, and every worker it spawns writes to <METRICS_DIR>/workers.
        own_metrics_dir("workers")
        start_shipping("supervisor")
        Supervisor().run()
