from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from storage.store import get_store


class Command(BaseCommand):
    help = "Creates what the store needs (Elasticsearch: index templates, indices, the event alias); idempotent."

    def handle(self, *args: object, **options: object) -> None:
        get_store().setup()
        self.stdout.write(f"Storage ready on the {settings.STORE_BACKEND} store.")
