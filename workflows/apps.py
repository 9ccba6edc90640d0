from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Workflows"

    def ready(self) -> None:
        from storage.workers.background import AFTER_STORE
        from workflows.services import workflow_messages

        # Stored events that match an enabled trigger go to system/workflow.
        if workflow_messages not in AFTER_STORE:
            AFTER_STORE.append(workflow_messages)
