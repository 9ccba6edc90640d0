from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_prune_schedule(using: str = "default", **kwargs: object) -> None:
    # After every migrate, so the log pruning exists (and is repaired) wherever the tables are.
    from console.logs.services import ensure_prune_schedule

    ensure_prune_schedule(using=using)


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Console"

    def ready(self) -> None:
        post_migrate.connect(_ensure_prune_schedule, sender=self, dispatch_uid="console.logs.prune_schedule")
