"""parse_graph's checks, the topological order, the checksum and the SVG picture."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.workflows.helpers import chain, example
from workflows.engine import GraphInvalid, action_reference, graph_checksum, graph_to_svg, parse_graph
from workflows.engine.graph import topological_order

SVG = "{http://www.w3.org/2000/svg}"


def problems(data: dict) -> list[str]:
    with pytest.raises(GraphInvalid) as info:
        parse_graph(data)
    return info.value.messages


def one_problem(data: dict, *fragments: str) -> str:
    found = problems(data)
    assert len(found) == 1, found
    for fragment in fragments:
        assert fragment in found[0], found[0]
    return found[0]


def test_the_example_imports_as_written():
    graph = parse_graph(example())
    assert [n.id for n in graph.nodes] == ["start", "tag", "seg", "crm"]
    assert [(e.source, e.target, e.port) for e in graph.edges] == [
        ("start", "tag", "out"),
        ("tag", "seg", "out"),
        ("seg", "crm", "out"),
    ]
    assert graph.name == "Big purchase follow-up"
    assert graph.trigger is not None and graph.trigger.event_type == "purchase"
    assert graph.trigger.source == "locust-test"
    assert graph.node("crm").timeout == 5.0 and graph.node("crm").on_error == "stop"


def test_port_and_from_port_are_both_accepted():
    data = {
        "nodes": [
            {"id": "start", "action": "start"},
            {"id": "if", "action": "if", "config": {"condition": {"path": "event@type", "op": "exists"}}},
            {"id": "yes", "action": "end"},
            {"id": "no", "action": "end"},
        ],
        "edges": [
            {"from": "start", "to": "if"},
            {"from": "if", "to": "yes", "port": "true"},
            {"from": "if", "to": "no", "from_port": "false"},
        ],
    }
    assert [e.port for e in parse_graph(data).edges] == ["out", "true", "false"]


def test_exactly_one_start_node():
    one_problem({"nodes": [{"id": "a", "action": "end"}], "edges": []}, "exactly one start node", "found 0")
    data = {"nodes": [{"id": "s1", "action": "start"}, {"id": "s2", "action": "start"}], "edges": []}
    one_problem(data, "exactly one start node", "'s1', 's2'")


def test_node_ids_are_unique_and_present():
    data = chain({"id": "a", "action": "end"})
    data["nodes"].append({"id": "a", "action": "end"})
    one_problem(data, "'a' is used more than once")
    data = chain()
    data["nodes"].append({"action": "end"})
    assert "node #2: id must be a non-empty string" in problems(data)


def test_edges_must_name_existing_nodes():
    data = chain({"id": "a", "action": "end"})
    data["edges"].append({"from": "a", "to": "ghost"})
    assert any("to names no node ('ghost')" in p for p in problems(data))


def test_a_cycle_is_named_node_by_node():
    data = chain(
        {"id": "a", "action": "log_message", "config": {"message": "x"}},
        {"id": "b", "action": "log_message", "config": {"message": "x"}},
        {"id": "c", "action": "log_message", "config": {"message": "x"}},
    )
    data["edges"].append({"from": "c", "to": "a"})
    assert "cycle: 'a' -> 'b' -> 'c' -> 'a'" in problems(data)


def test_a_self_loop_is_a_cycle():
    data = chain({"id": "a", "action": "log_message", "config": {"message": "x"}})
    data["edges"].append({"from": "a", "to": "a"})
    assert "cycle: 'a' -> 'a'" in problems(data)


def test_ports_must_exist_on_the_from_action():
    data = chain({"id": "a", "action": "add_tag", "config": {"tag": "t"}}, {"id": "b", "action": "end"})
    data["edges"][1]["port"] = "true"
    one_problem(data, "'a' (add_tag) has no port 'true'", "its ports: out")


def test_the_error_port_needs_on_error_error_port():
    data = chain({"id": "a", "action": "throw_error", "config": {"message": "x"}}, {"id": "b", "action": "end"})
    data["edges"][1]["port"] = "error"
    one_problem(data, "error port of 'a' is used only with on_error error_port")
    data["nodes"][1]["on_error"] = "error_port"
    assert parse_graph(data).edges[1].port == "error"


def test_end_has_no_output_ports():
    data = chain({"id": "a", "action": "end"}, {"id": "b", "action": "end"})
    assert problems(data) == [
        "edge #2 ('a' -> 'b'): 'a' (end) has no output ports",
        "not reachable from the start node: 'b'",
    ]


def test_unknown_actions_are_named():
    one_problem(chain({"id": "a", "action": "launch_rocket"}), "node 'a': unknown action 'launch_rocket'")


def test_config_is_checked_against_the_action_schema_with_node_and_path():
    data = chain(
        {"id": "t", "action": "add_tag", "config": {"tag": 5}},
        {"id": "r", "action": "remote_call", "config": {"url": "http://x.test/", "method": "YELL"}},
        {"id": "e", "action": "send_email", "config": {"to": "a@b.test"}},
        {"id": "x", "action": "set_field", "config": {"path": "memory@x", "value": 1, "extra": 1}},
    )
    found = problems(data)
    assert "node 't' (add_tag): config.tag: 5 is not of type 'string'" in found
    assert any(p.startswith("node 'r' (remote_call): config.method: 'YELL' is not one of") for p in found)
    assert any("node 'e' (send_email): config: 'subject' is a required property" in p for p in found)
    assert any("node 'x' (set_field): config: Additional properties" in p for p in found)


def test_a_nodes_schema_errors_do_not_hide_its_other_problems():
    data = chain({"id": "r", "action": "remote_call", "config": {"url": "ftp://x.test/", "method": "TRACE"}})
    found = problems(data)
    assert any(p.startswith("node 'r' (remote_call): config.method: 'TRACE' is not one of") for p in found)
    assert "node 'r' (remote_call): config.url: 'ftp://x.test/' is not an http(s) URL" in found


def test_writing_event_or_payload_is_a_config_error():
    data = chain(
        {"id": "a", "action": "set_field", "config": {"path": "event@properties.x", "value": 1}},
        {"id": "b", "action": "increment", "config": {"path": "payload@x"}},
    )
    found = problems(data)
    assert any(p.startswith("node 'a' (set_field): config.path: 'event@properties.x' is read-only") for p in found)
    assert any(p.startswith("node 'b' (increment): config.path: 'payload@x' is read-only") for p in found)


def test_profile_and_session_targets_are_limited():
    data = chain(
        {"id": "a", "action": "set_field", "config": {"path": "profile@id", "value": 1}},
        {"id": "b", "action": "set_field", "config": {"path": "profile@stats", "value": 1}},
        {"id": "c", "action": "set_field", "config": {"path": "session@profile.id", "value": 1}},
        {"id": "d", "action": "set_field", "config": {"path": "traits.x", "value": 1}},
    )
    found = problems(data)
    assert any("node 'a'" in p and "must start with one of" in p for p in found)
    assert any("node 'b'" in p and "is a whole root" in p for p in found)
    assert any("node 'c'" in p and "session@context.<field>" in p for p in found)
    assert any("node 'd'" in p and "not a writable path" in p for p in found)
    assert len(found) == 4


def test_references_templates_and_conditions_are_checked():
    data = chain(
        {"id": "a", "action": "set_field", "config": {"path": "memory@x", "value": {"y": ["event@bad path"]}}},
        {"id": "b", "action": "log_message", "config": {"message": "hi {{profile@}}"}},
        {"id": "c", "action": "if", "config": {"condition": {"path": "memory@x", "op": "bigger"}}},
        {"id": "d", "action": "data_exists", "config": {"path": "traits.name"}},
    )
    found = problems(data)
    assert any(p.startswith("node 'a' (set_field): config.value.y[0]: 'event@bad path' is not a path") for p in found)
    assert any(p.startswith("node 'b' (log_message): config.message: placeholder {{profile@}}") for p in found)
    assert any(p.startswith("node 'c' (if): config.condition.op: 'bigger'") for p in found)
    assert any(p.startswith("node 'd' (data_exists): config.path:") for p in found)
    assert len(found) == 4


def test_urls_and_addresses_without_placeholders_are_checked_at_save():
    data = chain(
        {"id": "r", "action": "remote_call", "config": {"url": "ftp://x.test/"}},
        {"id": "h", "action": "remote_call", "config": {"url": "{{memory@url}}", "headers": {"bad name": "x"}}},
        {"id": "e", "action": "send_email", "config": {"to": "nobody", "subject": "s", "body": "b"}},
    )
    found = problems(data)
    assert "node 'r' (remote_call): config.url: 'ftp://x.test/' is not an http(s) URL" in found
    assert "node 'h' (remote_call): config.headers: 'bad name' is not a header name" in found
    assert "node 'e' (send_email): config.to: 'nobody' is not an email address" in found


def test_on_error_and_timeout_values():
    data = chain({"id": "a", "action": "log_message", "config": {"message": "x"}, "on_error": "retry", "timeout": 0})
    data["nodes"].append({"id": "b", "action": "end", "timeout": True})
    data["edges"].append({"from": "a", "to": "b"})
    found = problems(data)
    assert any("node 'a' (log_message): on_error 'retry' is not one of stop, continue, error_port" in p for p in found)
    assert any("node 'a' (log_message): timeout 0 must be a number of seconds" in p for p in found)
    assert any("node 'b' (end): timeout True" in p for p in found)


def test_unreachable_nodes_are_an_error():
    data = chain({"id": "a", "action": "end"})
    data["nodes"] += [{"id": "lost", "action": "add_tag", "config": {"tag": "t"}}, {"id": "lost2", "action": "end"}]
    data["edges"].append({"from": "lost", "to": "lost2"})
    one_problem(data, "not reachable from the start node: 'lost', 'lost2'")


def test_every_problem_is_listed_at_once():
    data = {
        "trigger": {"event_type": "", "condition": {"path": "memory@x", "op": "exists"}},
        "nodes": [
            {"id": "start", "action": "start", "colour": "red"},
            {"id": "a", "action": "nope"},
            {"id": "b", "action": "add_tag", "config": {}},
        ],
        "edges": [{"from": "start", "to": "b", "port": "x"}, {"from": "b", "to": "start"}],
    }
    found = problems(data)
    assert len(found) >= 7, found
    joined = "\n".join(found)
    for fragment in (
        "trigger.event_type",
        "trigger.condition.path",  # memory@ is for workflows' nodes, not their trigger
        "unknown keys colour",
        "unknown action 'nope'",
        "'tag' is a required property",
        "has no port 'x'",
        "nothing may lead into the start node",
        "cycle:",
    ):
        assert fragment in joined


def test_not_an_object_or_no_nodes():
    assert problems([]) == ["a workflow is a JSON object with nodes and edges"]  # type: ignore[arg-type]
    assert "nodes: expected a non-empty list of nodes" in problems({"nodes": [], "edges": []})
    assert "edges: expected a list of edges" in problems({"nodes": [{"id": "s", "action": "start"}], "edges": {}})


def test_topological_order_is_stable_by_file_order():
    data = {
        "nodes": [
            {"id": "start", "action": "start"},
            {"id": "late", "action": "end"},
            {"id": "b", "action": "log_message", "config": {"message": "x"}},
            {"id": "a", "action": "log_message", "config": {"message": "x"}},
        ],
        "edges": [{"from": "start", "to": "a"}, {"from": "start", "to": "b"}, {"from": "a", "to": "late"}],
    }
    graph = parse_graph(data)
    order = [n.id for n in topological_order(graph)]
    assert order == ["start", "b", "a", "late"]
    assert all([n.id for n in topological_order(parse_graph(data))] == order for _ in range(5))


def test_checksum_is_canonical_and_ignores_name_and_trigger():
    data = example()
    reordered = {"edges": data["edges"], "nodes": [dict(reversed(list(n.items()))) for n in data["nodes"]]}
    assert graph_checksum(data) == graph_checksum(reordered)
    assert graph_checksum(data) == graph_checksum({**data, "name": "other", "trigger": None})
    changed = example()
    changed["nodes"][1]["config"]["tag"] = "other"
    assert graph_checksum(changed) != graph_checksum(data)
    assert len(graph_checksum(data)) == 64


def test_svg_is_well_formed_and_escapes_text():
    data = {
        "nodes": [
            {"id": "start", "action": "start"},
            {"id": "<if> & \"'", "action": "if", "config": {"condition": {"path": "event@type", "op": "exists"}}},
            {"id": "yes", "action": "add_tag", "config": {"tag": "t"}},
            {"id": "no", "action": "end"},
        ],
        "edges": [
            {"from": "start", "to": "<if> & \"'"},
            {"from": "<if> & \"'", "to": "yes", "port": "true"},
            {"from": "<if> & \"'", "to": "no", "port": "false"},
        ],
    }
    svg = graph_to_svg(parse_graph(data))
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "<if> & \"'" in texts and "true" in texts and "false" in texts
    assert "out" not in texts  # the default port of a one-port action is not labelled
    assert "<if>" not in svg and "<script" not in svg and "href" not in svg
    assert len(list(root.iter(f"{SVG}rect"))) == 4 and len(list(root.iter(f"{SVG}line"))) == 3


def test_svg_of_the_example():
    root = ET.fromstring(graph_to_svg(parse_graph(example())))
    assert [t.text for t in root.iter(f"{SVG}text")][:2] == ["start", "start"]


def test_action_reference_lists_every_action_with_ports_and_schema():
    reference = {entry["name"]: entry for entry in action_reference()}
    assert reference["if"]["ports"] == ["true", "false"] and reference["end"]["ports"] == []
    for entry in reference.values():
        assert entry["description"] and entry["config_schema"]["type"] == "object"
    assert {
        "start",
        "end",
        "if",
        "data_exists",
        "set_field",
        "copy_field",
        "increment",
        "decrement",
        "append",
        "remove",
        "delete_field",
        "add_tag",
        "remove_tag",
        "add_segment",
        "remove_segment",
        "template",
        "log_message",
        "throw_error",
        "remote_call",
        "send_email",
        "schedule_event",
        "discard_profile_changes",
    } == set(reference)
