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
from workflows.models.outbox import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Destination,
    DestinationTrigger,
    HttpMethod,
)

__all__ = [
    "Delivery", "DeliveryKind", "DeliveryStatus", "Destination", "DestinationTrigger", "HttpMethod",
    "OncePer", "RunStatus", "TriggerOnce", "TriggerRule", "Workflow", "WorkflowRun", "WorkflowVersion",
]  # fmt: skip
