from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_outbox_schedule(using: str = "default", **kwargs: object) -> None:
    # After every migrate, so the sweep exists (and is repaired) wherever the tables are.
    from workflows.outbox.scheduling import ensure_sweep_schedule

    ensure_sweep_schedule(using=using)


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Workflows"

    def ready(self) -> None:
        from queueing.worker import register_worker
        from storage.workers.background import AFTER_STORE
        from workflows.services import workflow_messages

        register_worker("workflow", "workflows.worker.WorkflowWorker")
        post_migrate.connect(_ensure_outbox_schedule, sender=self, dispatch_uid="workflows.outbox.schedule")
        # Stored events that match an enabled trigger go to system/workflow.
        if workflow_messages not in AFTER_STORE:
            AFTER_STORE.append(workflow_messages)
