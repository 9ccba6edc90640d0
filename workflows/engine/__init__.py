"""The workflow engine: graphs, actions and the deterministic executor. Pure functions over
dicts: no database, no network (external calls leave a run as delivery requests)."""

from workflows.engine.actions import (
    ACTIONS,
    ActionContext,
    ActionFailed,
    ActionOutcome,
    ActionSpec,
    DeliveryRequest,
    LogEntry,
    ScheduledEvent,
    Write,
    action_reference,
    get_action,
)
from workflows.engine.executor import NodeTrace, RunContext, RunResult, delivery_key, run_graph
from workflows.engine.graph import (
    Edge,
    Graph,
    GraphInvalid,
    Node,
    Trigger,
    graph_checksum,
    graph_to_svg,
    parse_graph,
    topological_order,
)

__all__ = [
    "ACTIONS",
    "ActionContext",
    "ActionFailed",
    "ActionOutcome",
    "ActionSpec",
    "DeliveryRequest",
    "Edge",
    "Graph",
    "GraphInvalid",
    "LogEntry",
    "Node",
    "NodeTrace",
    "RunContext",
    "RunResult",
    "ScheduledEvent",
    "Trigger",
    "Write",
    "action_reference",
    "delivery_key",
    "get_action",
    "graph_checksum",
    "graph_to_svg",
    "parse_graph",
    "run_graph",
    "topological_order",
]
