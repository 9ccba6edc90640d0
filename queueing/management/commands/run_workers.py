from __future__ import annotations

from django.core.management.base import BaseCommand

from console.logs.handler import start_shipping
from queueing.supervisor import Supervisor


class Command(BaseCommand):
    help = "Keeps worker.<type>.replicas processes of each enabled worker type running (local supervisor)."

    def handle(self, *args: object, **options: object) -> None:
        start_shipping("supervisor")
        Supervisor().run()
