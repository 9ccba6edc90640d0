"""Graphs and run contexts for the engine's unit tests (no database, no network)."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from storage.documents import new_profile
from workflows.engine import Graph, RunContext, RunResult, parse_graph, run_graph

NOW = "2024-05-01T12:00:00+00:00"

EXAMPLE = {
    "name": "Big purchase follow-up",
    "trigger": {
        "event_type": "purchase",
        "source": "locust-test",
        "condition": {"path": "event@properties.total", "op": "gte", "value": 100},
    },
    "nodes": [
        {"id": "start", "action": "start"},
        {"id": "tag", "action": "add_tag", "config": {"tag": "big-spender"}},
        {"id": "seg", "action": "add_segment", "config": {"segment": "vip"}},
        {
            "id": "crm",
            "action": "remote_call",
            "config": {
                "url": "http://127.0.0.1:9999/hook",
                "method": "POST",
                "body": {"profile": "profile@id", "total": "event@properties.total"},
            },
        },
    ],
    "edges": [{"from": "start", "to": "tag"}, {"from": "tag", "to": "seg"}, {"from": "seg", "to": "crm"}],
}


COUNTER = {
    "name": "Count purchases",
    "trigger": {"event_type": "purchase"},
    "nodes": [
        {"id": "start", "action": "start"},
        {"id": "count", "action": "increment", "config": {"path": "profile@stats.purchases", "by": 1}},
    ],
    "edges": [{"from": "start", "to": "count"}],
}


def example_to(url: str) -> dict[str, Any]:
    """The README's example workflow, calling `url` instead of its CRM."""
    definition = copy.deepcopy(EXAMPLE)
    definition["nodes"][3]["config"]["url"] = url
    return definition


def example() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE)


def chain(*nodes: dict[str, Any]) -> dict[str, Any]:
    """A start node followed by the nodes in a line."""
    all_nodes = [{"id": "start", "action": "start"}, *nodes]
    edges = [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(all_nodes)]
    return {"nodes": all_nodes, "edges": edges}


def context(
    *,
    properties: dict[str, Any] | None = None,
    profile: dict[str, Any] | None = None,
    session: dict[str, Any] | None = None,
    memory: dict[str, Any] | None = None,
    run_key: str = "run-1",
) -> RunContext:
    return RunContext(
        event={"id": "ev-1", "type": "purchase", "properties": properties or {}},
        profile=profile if profile is not None else new_profile("p-1", now=NOW),
        session=session,
        payload={"source": {"id": "locust-test"}},
        memory=memory or {},
        run_key=run_key,
        now=NOW,
    )


def run(data: dict[str, Any], ctx: RunContext | None = None, *, dry_run: bool = False) -> RunResult:
    graph: Graph = parse_graph(data)
    return run_graph(graph, ctx or context(), dry_run=dry_run)


def statuses(result: RunResult) -> dict[str, str]:
    return {t.node_id: t.status for t in result.trace}
