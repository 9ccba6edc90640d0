from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Tracking"

    def ready(self) -> None:
        from queueing.worker import register_worker

        register_worker("collector", "tracking.workers.collector.CollectorWorker")
