"""Runs a graph over one event: deterministic, pure, and never raising for a failing run.

Nodes run in topological order. A node runs when at least one of its incoming edges was
taken (its `from` node produced that edge's port); the other ports of a node are dead
branches, and a node reached only through dead branches is skipped.

Profile changes are made on a deep copy of the profile and recorded as ordered storage
operations (ProfileOperation, event=run_key), applied to the copy with the storage's own
apply_operation: later nodes see them, and storing the operations gives the same profile.
"""

from __future__ import annotations

import copy
import hashlib
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from storage.documents import apply_operation
from storage.jobs import ProfileOperation
from workflows.engine.actions import (
    ACTIONS,
    ERROR_PORT,
    ActionContext,
    ActionFailed,
    ActionOutcome,
    DeliveryRequest,
    LogEntry,
    ScheduledEvent,
    Write,
)
from workflows.engine.graph import Graph, Node, canonical_json, topological_order

__all__ = [
    "DeliveryRequest",
    "LogEntry",
    "NodeTrace",
    "RunContext",
    "RunResult",
    "ScheduledEvent",
    "delivery_key",
    "run_graph",
]


@dataclass
class RunContext:
    event: dict[str, Any]  # read-only: no action writes to it
    profile: dict[str, Any] | None
    session: dict[str, Any] | None
    payload: dict[str, Any]
    memory: dict[str, Any]
    run_key: str  # identifies the run; recorded on every profile operation so storage applies it once
    now: str  # ISO time of the run (scheduled events are due relative to it)


@dataclass(frozen=True)
class NodeTrace:
    node_id: str
    action: str
    input: dict[str, Any] | None  # the rendered config
    port: str | None  # the port taken (None: none)
    duration_ms: float
    error: str | None
    status: str  # "ok" | "error" | "skipped"


@dataclass
class RunResult:
    status: str  # "ok" | "failed"
    error: str | None
    trace: list[NodeTrace]
    profile_operations: list[ProfileOperation]
    session_context: dict[str, Any]  # to merge into the session's context
    session_properties: dict[str, Any]  # ... and properties
    deliveries: list[DeliveryRequest]
    scheduled: list[ScheduledEvent]
    logs: list[LogEntry]
    memory: dict[str, Any]
    changed: bool  # profile operations or session changes to store
    profile: dict[str, Any] | None = None  # the profile after the operations
    session: dict[str, Any] | None = None  # the session after the changes


def delivery_key(run_key: str, node_id: str, request: dict[str, Any]) -> str:
    """Identifies one delivery of one run, so the outbox sends it once however often the run
    is repeated: sha256 of the run key, the node and the canonical JSON of the request (as a
    JSON list, so no two different triples give the same text)."""
    return hashlib.sha256(canonical_json([run_key, node_id, request]).encode("utf-8")).hexdigest()


@dataclass
class _State:
    """The run's working data, changed only by the executor."""

    context: RunContext
    profile: dict[str, Any] | None
    session: dict[str, Any] | None
    memory: dict[str, Any]
    original_profile: dict[str, Any] | None
    operations: list[ProfileOperation] = field(default_factory=list)
    session_context: dict[str, Any] = field(default_factory=dict)
    session_properties: dict[str, Any] = field(default_factory=dict)
    deliveries: list[DeliveryRequest] = field(default_factory=list)
    scheduled: list[ScheduledEvent] = field(default_factory=list)
    logs: list[LogEntry] = field(default_factory=list)

    def sources(self) -> dict[str, Any]:
        return {
            "event": self.context.event,
            "payload": self.context.payload,
            "session": self.session,
            "profile": self.profile,
            "memory": self.memory,
        }


def _set_nested(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[path[-1]] = value


def _get_nested(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _apply_writes(state: _State, writes: list[Write]) -> None:
    """Applies a node's writes all or none: on a failing write, the state is as before the node."""
    profile, session, memory = (copy.deepcopy(x) for x in (state.profile, state.session, state.memory))
    operations, session_changes = [], []
    for write in writes:
        value = copy.deepcopy(write.value)  # a later change of the source must not alter what was recorded
        operation = ProfileOperation(write.op, write.target.path, value, event=state.context.run_key)
        if write.target.root == "profile":
            if profile is None:
                raise ActionFailed(f"cannot write {write.target}: this run has no profile")
            apply_operation(profile, operation)
            operations.append(operation)
        elif write.target.root == "session":
            if session is None:
                raise ActionFailed(f"cannot write {write.target}: this run has no session")
            apply_operation(session, operation)
            session_changes.append(write.target.path)
        else:
            apply_operation(memory, operation)
    state.profile, state.session, state.memory = profile, session, memory
    state.operations += operations
    for path in session_changes:
        # Sessions are stored by merging context and properties (storage.documents.merge_session),
        # so a change travels as the field's new value; a deleted field as null.
        part, rest = path.split(".", 1)
        merge = state.session_context if part == "context" else state.session_properties
        _set_nested(merge, rest.split("."), copy.deepcopy(_get_nested(session, path)))


def _apply(state: _State, outcome: ActionOutcome) -> None:
    if outcome.discard_profile_changes:
        state.operations = []
        state.profile = copy.deepcopy(state.original_profile)
    _apply_writes(state, outcome.writes)
    state.deliveries += outcome.deliveries
    state.scheduled += outcome.scheduled
    state.logs += outcome.logs


def _run_node(state: _State, node: Node) -> tuple[ActionOutcome | None, str | None, float]:
    """The node's outcome, or its error; and how long it took (ms). Its changes are applied
    only when it succeeded."""
    spec = ACTIONS[node.action]
    started = time.perf_counter()
    ctx = ActionContext(node_id=node.id, sources=state.sources(), run_key=state.context.run_key, now=state.context.now)
    try:
        outcome = spec.run(ctx, node.config)
        elapsed = time.perf_counter() - started
        # Actions are fast and pure (no I/O), so nothing can hang: the timeout is checked after
        # the action instead of interrupting it, and a node over its time fails.
        if elapsed > node.timeout:
            raise ActionFailed(f"took {elapsed:.3f} s, more than its timeout of {node.timeout:g} s")
        _apply(state, outcome)
    except (ActionFailed, ValueError) as exc:
        return None, str(exc), (time.perf_counter() - started) * 1000
    except Exception as exc:  # a bug in an action must fail the node, not the caller
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return None, f"internal error: {detail}", (time.perf_counter() - started) * 1000
    return outcome, None, (time.perf_counter() - started) * 1000


def _skipped(node: Node) -> NodeTrace:
    return NodeTrace(node.id, node.action, None, None, 0.0, None, "skipped")


def run_graph(graph: Graph, context: RunContext, *, dry_run: bool = False) -> RunResult:
    """Runs every node the event reaches. `dry_run` gives the same result: the engine never
    sends or stores anything, the caller decides what to do with the result (a dry run shows
    the deliveries as "would send")."""
    del dry_run  # the same run either way; kept so callers say which one they mean
    state = _State(
        context=context,
        profile=copy.deepcopy(context.profile),
        session=copy.deepcopy(context.session),
        memory=copy.deepcopy(context.memory),
        original_profile=copy.deepcopy(context.profile),
    )
    taken: set[tuple[str, str]] = set()  # (node id, port) produced so far
    trace: list[NodeTrace] = []
    error: str | None = None
    incoming_of: dict[str, list[tuple[str, str]]] = {node.id: [] for node in graph.nodes}
    for edge in graph.edges:
        incoming_of[edge.target].append((edge.source, edge.port))
    for node in topological_order(graph):
        incoming = incoming_of[node.id]
        runs = not incoming or any(edge in taken for edge in incoming)
        if error is not None or not runs:
            trace.append(_skipped(node))
            continue
        outcome, failure, duration = _run_node(state, node)
        if outcome is not None:
            taken.add((node.id, outcome.port))
            trace.append(NodeTrace(node.id, node.action, outcome.input, outcome.port or None, duration, None, "ok"))
            continue
        port = _port_after_error(node)
        if port is not None:
            taken.add((node.id, port))
        else:
            error = f"node {node.id!r} ({node.action}): {failure}"
        trace.append(NodeTrace(node.id, node.action, node.config, port, duration, failure, "error"))
    return RunResult(
        status="failed" if error else "ok",
        error=error,
        trace=trace,
        profile_operations=state.operations,
        session_context=state.session_context,
        session_properties=state.session_properties,
        deliveries=state.deliveries,
        scheduled=state.scheduled,
        logs=state.logs,
        memory=state.memory,
        changed=bool(state.operations or state.session_context or state.session_properties),
        profile=state.profile,
        session=state.session,
    )


def _port_after_error(node: Node) -> str | None:
    """The port a failed node takes: None stops the run."""
    if node.on_error == "continue":
        return ACTIONS[node.action].default_port or ""
    if node.on_error == "error_port":
        return ERROR_PORT
    return None
