"""The workflows app's tables: flows (workflows, versions, triggers, runs) and the outbox."""

from workflows.models.flows import (
    OncePer,
    RunStatus,
    TriggerOnce,
    TriggerRule,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
)

__all__ = ["OncePer", "RunStatus", "TriggerOnce", "TriggerRule", "Workflow", "WorkflowRun", "WorkflowVersion"]
