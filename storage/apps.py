from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "storage"
    verbose_name = "Storage"

    def ready(self) -> None:
        from queueing.worker import register_worker

        register_worker("background", "storage.workers.background.BackgroundWorker")
