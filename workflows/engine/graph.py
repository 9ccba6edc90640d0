"""A workflow's graph: parsing and checking its JSON, ordering its nodes, its checksum and
a small server-rendered SVG picture of it.

    {"name": ..., "trigger": {"event_type": ..., "source": ..., "condition": ...},
     "nodes": [{"id", "action", "config"?, "on_error"?, "timeout"?}, ...],
     "edges": [{"from", "to", "port"? (or "from_port")}, ...]}
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import deque
from dataclasses import dataclass, field
from html import escape
from typing import Any

from jsonschema import Draft202012Validator

from tracking.rules.conditions import check_condition
from tracking.rules.paths import ROOTS
from workflows.engine.actions import ACTIONS, ERROR_PORT, ActionSpec

ON_ERROR = ("stop", "continue", "error_port")
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 60.0
NODE_KEYS = {"id", "action", "config", "on_error", "timeout"}
EDGE_KEYS = {"from", "to", "port", "from_port"}


class GraphInvalid(ValueError):
    """Every problem found in a graph, each a sentence naming the node or edge."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Node:
    id: str
    action: str
    config: dict[str, Any] = field(default_factory=dict)
    on_error: str = "stop"
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Edge:
    source: str  # "from" in the JSON
    target: str  # "to"
    port: str


@dataclass(frozen=True)
class Trigger:
    event_type: str
    source: str | None = None
    condition: dict[str, Any] | None = None


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    name: str = ""
    trigger: Trigger | None = None

    def node(self, node_id: str) -> Node:
        return next(node for node in self.nodes if node.id == node_id)

    @property
    def start(self) -> Node:
        return next(node for node in self.nodes if node.action == "start")


# --- parsing -------------------------------------------------------------------------------


def _label(index: int, raw: Any) -> str:
    node_id = raw.get("id") if isinstance(raw, dict) else None
    return f"node {node_id!r}" if isinstance(node_id, str) and node_id else f"node #{index + 1}"


def _config_problems(where: str, spec: ActionSpec, config: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(spec.config_schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [f"{where}: {_json_path('config', e.absolute_path)}: {e.message}" for e in errors]
    try:
        checked = spec.check(config)
    except (KeyError, TypeError, AttributeError, ValueError):
        # The checks read a config of the schema's shape; where the schema failed on what they
        # read, its errors say what to fix first. Elsewhere they run, so every problem is named.
        if not problems:
            raise
        checked = []
    return problems + [f"{where}: {problem}" for problem in checked if f"{where}: {problem}" not in problems]


def _json_path(prefix: str, parts: Any) -> str:
    return prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _parse_node(index: int, raw: Any, problems: list[str]) -> Node | None:
    where = _label(index, raw)
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object with id and action")
        return None
    if unknown := sorted(set(raw) - NODE_KEYS):
        problems.append(f"{where}: unknown keys {', '.join(unknown)} (a node has {', '.join(sorted(NODE_KEYS))})")
    node_id, action = raw.get("id"), raw.get("action")
    if not isinstance(node_id, str) or not node_id.strip():
        problems.append(f"{where}: id must be a non-empty string")
        return None
    spec = ACTIONS.get(action) if isinstance(action, str) else None
    if spec is None:
        problems.append(f"{where}: unknown action {action!r} (known: {', '.join(sorted(ACTIONS))})")
    where = f"{where} ({action})" if spec else where
    config = raw.get("config") if raw.get("config") is not None else {}
    if not isinstance(config, dict):
        problems.append(f"{where}: config must be an object")
    elif spec is not None:
        problems += _config_problems(where, spec, config)
    on_error = raw.get("on_error", "stop")
    if on_error not in ON_ERROR:
        problems.append(f"{where}: on_error {on_error!r} is not one of {', '.join(ON_ERROR)}")
    timeout = raw.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT:
        problems.append(f"{where}: timeout {timeout!r} must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}")
        timeout = DEFAULT_TIMEOUT
    return Node(
        id=node_id,
        action=action if isinstance(action, str) else "",
        config=config if isinstance(config, dict) else {},
        on_error=on_error if on_error in ON_ERROR else "stop",
        timeout=float(timeout),
    )


def _parse_edge(index: int, raw: Any, nodes: dict[str, Node], problems: list[str]) -> Edge | None:
    where = f"edge #{index + 1}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object with from and to")
        return None
    where = f"edge #{index + 1} ({raw.get('from')!r} -> {raw.get('to')!r})"
    if unknown := sorted(set(raw) - EDGE_KEYS):
        problems.append(f"{where}: unknown keys {', '.join(unknown)} (an edge has from, to and port)")
    if "port" in raw and "from_port" in raw and raw["port"] != raw["from_port"]:
        problems.append(f"{where}: port {raw['port']!r} and from_port {raw['from_port']!r} disagree")
    source, target = raw.get("from"), raw.get("to")
    ok = True
    for key, value in (("from", source), ("to", target)):
        if not isinstance(value, str) or value not in nodes:
            problems.append(f"{where}: {key} names no node ({value!r})")
            ok = False
    if not ok:
        return None
    node = nodes[source]
    spec = ACTIONS.get(node.action)
    port = raw.get("port", raw.get("from_port"))
    if spec is None:
        return Edge(source, target, port if isinstance(port, str) else "")
    if port is None:
        if spec.default_port is None:
            problems.append(f"{where}: {source!r} ({node.action}) has no output ports")
            return None
        port = spec.default_port
    if port == ERROR_PORT and node.on_error != "error_port":
        problems.append(f"{where}: the error port of {source!r} is used only with on_error error_port")
    elif port != ERROR_PORT and port not in spec.output_ports:
        ports = ", ".join(spec.output_ports) or "none"
        problems.append(f"{where}: {source!r} ({node.action}) has no port {port!r} (its ports: {ports})")
    return Edge(source, target, port)


def _parse_trigger(raw: Any, problems: list[str]) -> Trigger | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append("trigger: expected an object with event_type, source and condition")
        return None
    if unknown := sorted(set(raw) - {"event_type", "source", "condition"}):
        problems.append(f"trigger: unknown keys {', '.join(unknown)}")
    event_type, source, condition = raw.get("event_type"), raw.get("source"), raw.get("condition")
    if not isinstance(event_type, str) or not event_type:
        problems.append("trigger.event_type: must be a non-empty string")
    if source is not None and (not isinstance(source, str) or not source):
        problems.append("trigger.source: must be a source id or null (any source)")
    if condition is not None:
        try:  # a trigger is checked before any workflow runs: no memory@ yet
            check_condition(condition, "trigger.condition", roots=ROOTS)
        except ValueError as exc:
            problems.append(str(exc))
    return Trigger(event_type=str(event_type), source=source, condition=condition)


def _structure_problems(graph: Graph) -> list[str]:
    problems = []
    starts = [node.id for node in graph.nodes if node.action == "start"]
    if len(starts) != 1:
        found = f"found {len(starts)}" + (f": {', '.join(map(repr, starts))}" if starts else "")
        problems.append(f"a workflow needs exactly one start node ({found})")
    seen: set[tuple[str, str, str]] = set()
    for edge in graph.edges:
        key = (edge.source, edge.target, edge.port)
        if key in seen:
            problems.append(f"edge {edge.source!r} -> {edge.target!r} (port {edge.port!r}) appears twice")
        seen.add(key)
        if edge.target in starts:
            problems.append(f"edge {edge.source!r} -> {edge.target!r}: nothing may lead into the start node")
    problems += [f"cycle: {' -> '.join(map(repr, cycle))}" for cycle in find_cycles(graph)]
    if len(starts) == 1:
        reachable = _reachable(graph, starts[0])
        unreachable = [node.id for node in graph.nodes if node.id not in reachable]
        if unreachable:
            problems.append(f"not reachable from the start node: {', '.join(map(repr, unreachable))}")
    return problems


def parse_graph(data: dict[str, Any]) -> Graph:
    """The graph, or GraphInvalid listing every problem found."""
    if not isinstance(data, dict):
        raise GraphInvalid(["a workflow is a JSON object with nodes and edges"])
    problems: list[str] = []
    name = data.get("name", "")
    if not isinstance(name, str):
        problems.append("name: must be a string")
    trigger = _parse_trigger(data.get("trigger"), problems)
    raw_nodes, raw_edges = data.get("nodes"), data.get("edges", [])
    if not isinstance(raw_nodes, list) or not raw_nodes:
        problems.append("nodes: expected a non-empty list of nodes")
        raw_nodes = []
    if not isinstance(raw_edges, list):
        problems.append("edges: expected a list of edges")
        raw_edges = []
    nodes: dict[str, Node] = {}
    for index, raw in enumerate(raw_nodes):
        node = _parse_node(index, raw, problems)
        if node is None:
            continue
        if node.id in nodes:
            problems.append(f"node id {node.id!r} is used more than once")
            continue
        nodes[node.id] = node
    edges = [edge for i, raw in enumerate(raw_edges) if (edge := _parse_edge(i, raw, nodes, problems))]
    graph = Graph(nodes=tuple(nodes.values()), edges=tuple(edges), name=name if isinstance(name, str) else "")
    if nodes:
        problems += _structure_problems(graph)
    if problems:
        raise GraphInvalid(problems)
    return Graph(nodes=graph.nodes, edges=graph.edges, name=graph.name, trigger=trigger)


# --- order ---------------------------------------------------------------------------------


def _successors(graph: Graph) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {node.id: [] for node in graph.nodes}
    for edge in graph.edges:
        if edge.target not in out[edge.source]:
            out[edge.source].append(edge.target)
    return out


def _reachable(graph: Graph, start: str) -> set[str]:
    successors, seen, queue = _successors(graph), {start}, deque([start])
    while queue:
        for child in successors[queue.popleft()]:
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return seen


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected group of nodes, as [a, b, ..., a], in file order."""
    successors = _successors(graph)
    position = {node.id: index for index, node in enumerate(graph.nodes)}
    cycles, covered = [], set()
    for node in graph.nodes:
        if node.id in covered:
            continue
        cycle = _cycle_through(node.id, successors)
        if cycle:
            cycles.append(cycle)
            covered.update(cycle)
    return sorted(cycles, key=lambda c: position[c[0]])


def _cycle_through(start: str, successors: dict[str, list[str]]) -> list[str] | None:
    """The shortest path from start back to itself (breadth first), or None."""
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for child in successors[current]:
            if child == start:
                path = [current]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [start, *reversed(path[:-1]), start] if current != start else [start, start]
            if child not in parents:
                parents[child] = current
                queue.append(child)
    return None


def topological_order(graph: Graph) -> list[Node]:
    """Every node after the nodes leading to it; among the nodes ready at once, the one first
    in the file goes first, so the order (and a run) is the same every time."""
    position = {node.id: index for index, node in enumerate(graph.nodes)}
    incoming = {node.id: 0 for node in graph.nodes}
    successors = _successors(graph)
    for targets in successors.values():
        for target in targets:
            incoming[target] += 1
    ready = [position[node_id] for node_id, count in incoming.items() if count == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        node = graph.nodes[heapq.heappop(ready)]
        order.append(node)
        for child in successors[node.id]:
            incoming[child] -= 1
            if incoming[child] == 0:
                heapq.heappush(ready, position[child])
    if len(order) != len(graph.nodes):
        raise GraphInvalid([f"cycle: {' -> '.join(map(repr, cycle))}" for cycle in find_cycles(graph)])
    return order


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def graph_checksum(data: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the nodes and edges as written (name and trigger left
    out: they do not change what a run does)."""
    body = {"nodes": data.get("nodes"), "edges": data.get("edges")}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


# --- picture -------------------------------------------------------------------------------

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 180, 46, 36, 64, 20
MAX_LABEL = 24


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "\u2026"


def _layers(graph: Graph) -> list[list[Node]]:
    """Nodes by depth (the longest path from a node without inputs), each layer in
    topological order."""
    order = topological_order(graph)
    depth: dict[str, int] = {}
    for node in order:
        depth.setdefault(node.id, 0)
        for edge in graph.edges:
            if edge.source == node.id:
                depth[edge.target] = max(depth.get(edge.target, 0), depth[node.id] + 1)
    layers: list[list[Node]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in order:
        layers[depth[node.id]].append(node)
    return layers


def graph_to_svg(graph: Graph) -> str:
    """A layered picture (top to bottom by depth): a box per node with its id and action,
    arrows labelled with their port unless it is the only port of its action. Plain SVG: no script,
    no external resources; every text escaped."""
    layers = _layers(graph)
    columns = max((len(layer) for layer in layers), default=1)
    width = 2 * MARGIN + columns * BOX_W + (columns - 1) * GAP_X
    height = 2 * MARGIN + len(layers) * BOX_H + max(len(layers) - 1, 0) * GAP_Y
    where: dict[str, tuple[float, float]] = {}
    for row, layer in enumerate(layers):
        offset = (width - (len(layer) * BOX_W + (len(layer) - 1) * GAP_X)) / 2
        for column, node in enumerate(layer):
            where[node.id] = (offset + column * (BOX_W + GAP_X), MARGIN + row * (BOX_H + GAP_Y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    parts += [_edge_svg(graph, edge, where) for edge in graph.edges]
    parts += [_node_svg(node, *where[node.id]) for node in graph.nodes]
    parts.append("</svg>")
    return "\n".join(parts)


def _edge_svg(graph: Graph, edge: Edge, where: dict[str, tuple[float, float]]) -> str:
    (x1, y1), (x2, y2) = where[edge.source], where[edge.target]
    x1, y1, x2, y2 = x1 + BOX_W / 2, y1 + BOX_H, x2 + BOX_W / 2, y2
    spec = ACTIONS.get(graph.node(edge.source).action)
    colour = "#c0392b" if edge.port == ERROR_PORT else "#555"
    line = (
        f'<line x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}" stroke="{colour}" stroke-width="1.5" '
        'marker-end="url(#arrow)"/>'
    )
    # Only a one-port action's port goes unlabelled: on a branching action (if: true/false)
    # the default port is a branch like the others.
    if spec is not None and edge.port == spec.default_port and len(spec.output_ports) == 1:
        return line
    label = escape(_short(edge.port), quote=True)
    return f'{line}<text x="{(x1 + x2) / 2 + 4:g}" y="{(y1 + y2) / 2:g}" fill="{colour}" font-size="11">{label}</text>'


def _node_svg(node: Node, x: float, y: float) -> str:
    fill = "#e8f4ea" if node.action == "start" else "#f4f6fb"
    title = escape(f"{node.id} ({node.action}), on_error {node.on_error}", quote=True)
    return (
        f"<g><title>{title}</title>"
        f'<rect x="{x:g}" y="{y:g}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="#667"/>'
        f'<text x="{x + BOX_W / 2:g}" y="{y + 19:g}" text-anchor="middle" font-weight="bold">'
        f"{escape(_short(node.id), quote=True)}</text>"
        f'<text x="{x + BOX_W / 2:g}" y="{y + 36:g}" text-anchor="middle" fill="#555">'
        f"{escape(_short(node.action), quote=True)}</text></g>"
    )
