from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from queueing.broker import get_broker
from queueing.topics import MAIN_TOPICS


class Command(BaseCommand):
    help = "Creates the tenant, namespace, partitioned topics, dead-letter topics and subscriptions (idempotent)."

    def handle(self, *args: object, **options: object) -> None:
        get_broker().setup()
        for topic in MAIN_TOPICS:
            self.stdout.write(
                f"{topic.url}: {settings.QUEUE_PARTITIONS} partitions, subscription {topic.subscription}, "
                f"dead letters {topic.dead_letter.url}"
            )
        self.stdout.write(f"Queue ready on the {settings.QUEUE_BACKEND} broker.")
