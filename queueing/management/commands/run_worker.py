from __future__ import annotations

import logging

from django.core.management.base import BaseCommand, CommandParser
from django.utils.module_loading import import_string

from console.logs.handler import start_shipping
from queueing.worker import WORKER_CLASSES, get_worker_settings


class Command(BaseCommand):
    help = "Runs one worker process of the given type until SIGTERM/SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("worker_type", choices=sorted(WORKER_CLASSES))

    def handle(self, *args: object, worker_type: str, **options: object) -> None:
        # Before anything is logged: every line of this process goes to the console's log page.
        start_shipping(worker_type)
        config = get_worker_settings(worker_type)
        logging.getLogger().setLevel(config.logging_level)
        if not config.enabled:
            logging.getLogger(__name__).warning(
                "worker.%s.enabled is false; running anyway because it was started by hand", worker_type
            )
        import_string(WORKER_CLASSES[worker_type]).start()
