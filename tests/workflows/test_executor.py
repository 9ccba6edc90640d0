"""run_graph: the example, branches, errors, every action, and the profile operations."""

from __future__ import annotations

import copy

from storage.documents import Applied, apply_changes
from storage.jobs import ProfileChange, ProfileOperation
from tests.workflows.helpers import NOW, chain, context, example, run, statuses
from workflows.engine import delivery_key

BRANCHING = {
    "nodes": [
        {"id": "start", "action": "start"},
        {
            "id": "big",
            "action": "if",
            "config": {"condition": {"path": "event@properties.total", "op": "gte", "value": 100}},
        },
        {"id": "tag", "action": "add_tag", "config": {"tag": "big-spender"}},
        {"id": "small", "action": "log_message", "config": {"message": "small order of {{event@properties.total}}"}},
        {"id": "after_tag", "action": "add_segment", "config": {"segment": "vip"}},
        {"id": "both", "action": "increment", "config": {"path": "profile@stats.orders"}},
    ],
    "edges": [
        {"from": "start", "to": "big"},
        {"from": "big", "to": "tag", "port": "true"},
        {"from": "big", "to": "small", "port": "false"},
        {"from": "tag", "to": "after_tag"},
        {"from": "after_tag", "to": "both"},
        {"from": "small", "to": "both"},
    ],
}


def test_the_example_tags_segments_and_asks_for_one_http_call():
    result = run(example(), context(properties={"total": 150}))
    assert result.status == "ok" and result.error is None
    assert result.profile_operations == [
        ProfileOperation("add_tag", "tags", "big-spender", event="run-1"),
        ProfileOperation("append", "segments", "vip", event="run-1"),
    ]
    assert len(result.deliveries) == 1
    delivery = result.deliveries[0]
    assert delivery.node_id == "crm" and delivery.kind == "http"
    assert delivery.request == {
        "method": "POST",
        "url": "http://127.0.0.1:9999/hook",
        "headers": {},
        "body": {"profile": "p-1", "total": 150},
        "timeout": 10,
    }
    assert delivery.summary == "POST http://127.0.0.1:9999/hook"
    assert result.profile["tags"] == ["big-spender"] and result.profile["segments"] == ["vip"]
    assert result.changed and statuses(result) == dict.fromkeys(["start", "tag", "seg", "crm"], "ok")
    assert result.trace[3].input["body"] == {"profile": "p-1", "total": 150}


def test_the_callers_data_is_not_modified():
    ctx = context(properties={"total": 150}, memory={"m": 1})
    before = copy.deepcopy((ctx.event, ctx.profile, ctx.session, ctx.payload, ctx.memory))
    run(example(), ctx)
    assert (ctx.event, ctx.profile, ctx.session, ctx.payload, ctx.memory) == before


def test_delivery_key_is_stable_and_specific():
    request = {"method": "POST", "url": "http://x.test/", "headers": {}, "body": {"a": 1, "b": 2}}
    same_request = {"body": {"b": 2, "a": 1}, "headers": {}, "url": "http://x.test/", "method": "POST"}
    key = delivery_key("run-1", "crm", request)
    assert key == delivery_key("run-1", "crm", same_request) and len(key) == 64
    assert key != delivery_key("run-2", "crm", request)
    assert key != delivery_key("run-1", "crm2", request)
    assert key != delivery_key("run-1", "crm", {**request, "body": {"a": 1}})


def test_an_if_node_branches_and_the_other_branch_is_dead():
    big = run(BRANCHING, context(properties={"total": 150}))
    assert statuses(big) == {
        "start": "ok",
        "big": "ok",
        "tag": "ok",
        "small": "skipped",
        "after_tag": "ok",
        "both": "ok",
    }
    assert big.trace[1].port == "true" and big.logs == []
    assert [op.path for op in big.profile_operations] == ["tags", "segments", "stats.orders"]

    small = run(BRANCHING, context(properties={"total": 50}))
    assert statuses(small) == {
        "start": "ok",
        "big": "ok",
        "tag": "skipped",
        "small": "ok",
        "after_tag": "skipped",  # reachable only through the dead true branch
        "both": "ok",  # one taken incoming edge is enough
    }
    assert [(log.node_id, log.level, log.message) for log in small.logs] == [("small", "info", "small order of 50")]
    assert small.profile_operations == [ProfileOperation("increment", "stats.orders", 1, event="run-1")]


def test_data_exists_branches_on_missing_and_null():
    data = {
        "nodes": [
            {"id": "start", "action": "start"},
            {"id": "has", "action": "data_exists", "config": {"path": "event@properties.email"}},
            {"id": "yes", "action": "set_field", "config": {"path": "memory@seen", "value": "yes"}},
            {"id": "no", "action": "set_field", "config": {"path": "memory@seen", "value": "no"}},
        ],
        "edges": [
            {"from": "start", "to": "has"},
            {"from": "has", "to": "yes", "port": "true"},
            {"from": "has", "to": "no", "port": "false"},
        ],
    }
    assert run(data, context(properties={"email": "a@b.test"})).memory == {"seen": "yes"}
    assert run(data, context(properties={"email": None})).memory == {"seen": "no"}
    assert run(data, context()).memory == {"seen": "no"}


def _failing(on_error: str | None) -> dict:
    boom = {"id": "boom", "action": "throw_error", "config": {"message": "no {{event@properties.total}}"}}
    if on_error:
        boom["on_error"] = on_error
    return {
        "nodes": [
            {"id": "start", "action": "start"},
            {"id": "first", "action": "add_tag", "config": {"tag": "before"}},
            boom,
            {"id": "next", "action": "add_tag", "config": {"tag": "after"}},
            {"id": "handler", "action": "add_tag", "config": {"tag": "handled"}},
        ],
        "edges": [
            {"from": "start", "to": "first"},
            {"from": "first", "to": "boom"},
            {"from": "boom", "to": "next"},
            *([{"from": "boom", "to": "handler", "port": "error"}] if on_error == "error_port" else []),
        ],
    }


def test_on_error_stop_fails_the_run_and_skips_the_rest():
    data = _failing(None)
    data["nodes"].pop()  # no handler without an error port
    result = run(data, context(properties={"total": 7}))
    assert result.status == "failed"
    assert result.error == "node 'boom' (throw_error): no 7"
    assert statuses(result) == {"start": "ok", "first": "ok", "boom": "error", "next": "skipped"}
    assert result.trace[2].error == "no 7" and result.trace[2].port is None
    # What ran before the failure is in the result; the caller decides what a failed run keeps.
    assert [op.value for op in result.profile_operations] == ["before"]


def test_on_error_continue_takes_the_default_port():
    data = _failing("continue")
    data["nodes"].pop()
    result = run(data, context(properties={"total": 7}))
    assert result.status == "ok" and result.error is None
    assert statuses(result) == {"start": "ok", "first": "ok", "boom": "error", "next": "ok"}
    assert result.trace[2].port == "out" and result.trace[2].error == "no 7"
    assert [op.value for op in result.profile_operations] == ["before", "after"]


def test_on_error_error_port_takes_the_error_branch_only():
    result = run(_failing("error_port"), context(properties={"total": 7}))
    assert result.status == "ok"
    assert statuses(result) == {"start": "ok", "first": "ok", "boom": "error", "next": "skipped", "handler": "ok"}
    assert result.trace[2].port == "error"
    assert [op.value for op in result.profile_operations] == ["before", "handled"]


def test_a_node_over_its_timeout_fails():
    data = chain({"id": "slow", "action": "log_message", "config": {"message": "x"}, "timeout": 1e-9})
    result = run(data)
    assert result.status == "failed" and "more than its timeout" in result.error
    assert result.logs == []  # a failed node's outcome is not applied


def test_a_failing_write_leaves_the_profile_as_it_was():
    profile = context().profile
    profile["traits"]["name"] = "Ann"
    data = chain(
        {"id": "ok", "action": "set_field", "config": {"path": "profile@traits.city", "value": "Oslo"}},
        {"id": "bad", "action": "increment", "config": {"path": "profile@traits.name"}, "on_error": "continue"},
        {"id": "deep", "action": "set_field", "config": {"path": "profile@traits.name.first", "value": "A"}},
    )
    result = run(data, context(profile=profile))
    assert statuses(result)["bad"] == "error" and "cannot increment" in result.trace[2].error
    assert result.status == "failed" and "goes through 'name'" in result.error
    assert result.profile["traits"] == {"name": "Ann", "city": "Oslo"}
    assert [op.path for op in result.profile_operations] == ["traits.city"]


def test_without_a_profile_or_session_writing_them_fails_the_node():
    data = chain({"id": "w", "action": "set_field", "config": {"path": "profile@traits.x", "value": 1}})
    ctx = context()
    ctx.profile = None
    assert run(data, ctx).error == "node 'w' (set_field): cannot write profile@traits.x: this run has no profile"
    data = chain({"id": "w", "action": "set_field", "config": {"path": "session@context.x", "value": 1}})
    assert "this run has no session" in run(data).error


def test_discard_profile_changes_drops_what_was_collected_so_far():
    data = chain(
        {"id": "a", "action": "add_tag", "config": {"tag": "dropped"}},
        {"id": "b", "action": "set_field", "config": {"path": "memory@kept", "value": True}},
        {"id": "discard", "action": "discard_profile_changes"},
        {"id": "c", "action": "add_tag", "config": {"tag": "kept"}},
    )
    result = run(data)
    assert result.profile_operations == [ProfileOperation("add_tag", "tags", "kept", event="run-1")]
    assert result.profile["tags"] == ["kept"] and result.memory == {"kept": True}


def test_two_hundred_increments_on_one_profile_and_storage_agrees():
    nodes = [{"id": f"inc{i}", "action": "increment", "config": {"path": "profile@stats.clicks"}} for i in range(200)]
    ctx = context()
    result = run(chain(*nodes), ctx)
    assert result.status == "ok" and result.profile["stats"]["clicks"] == 200
    assert len(result.profile_operations) == 200
    assert all(op.event == "run-1" for op in result.profile_operations)
    stored = apply_changes(
        ctx.profile, Applied(), [ProfileChange("p-1", "job-1", result.profile_operations)], now=NOW
    ).document
    assert stored["stats"] == result.profile["stats"]
    again = apply_changes(
        stored,
        Applied.of([], ["run-1"]),
        [ProfileChange("p-1", "job-2", result.profile_operations)],
        now=NOW,
    ).document
    assert again["stats"]["clicks"] == 200  # the run's operations apply once


def test_dry_run_gives_the_same_result():
    real = run(example(), context(properties={"total": 150}))
    dry = run(example(), context(properties={"total": 150}), dry_run=True)
    assert dry.deliveries == real.deliveries and dry.profile_operations == real.profile_operations
    assert [(t.node_id, t.status, t.port, t.input) for t in dry.trace] == [
        (t.node_id, t.status, t.port, t.input) for t in real.trace
    ]


def test_data_actions_on_profile_session_and_memory():
    profile = context().profile
    profile["traits"] = {"name": "Ann", "old": 1, "colours": ["red", "blue"]}
    profile["tags"] = ["stale"]
    profile["segments"] = ["gone"]
    session = {"id": "s-1", "context": {"browser": "x"}, "properties": {}}
    data = chain(
        {
            "id": "set",
            "action": "set_field",
            "config": {"path": "profile@traits.total", "value": "event@properties.total"},
        },
        {
            "id": "obj",
            "action": "set_field",
            "config": {"path": "memory@info", "value": {"n": "profile@traits.name", "k": [1]}},
        },
        {"id": "copy", "action": "copy_field", "config": {"from": "profile@traits.name", "to": "profile@data.name"}},
        {
            "id": "nocopy",
            "action": "copy_field",
            "config": {"from": "event@properties.nope", "to": "profile@data.name"},
        },
        {"id": "inc", "action": "increment", "config": {"path": "profile@stats.spent", "by": "event@properties.total"}},
        {"id": "dec", "action": "decrement", "config": {"path": "profile@stats.spent", "by": 0.5}},
        {"id": "app", "action": "append", "config": {"path": "profile@traits.colours", "value": ["green", "red"]}},
        {"id": "rem", "action": "remove", "config": {"path": "profile@traits.colours", "value": "blue"}},
        {"id": "del", "action": "delete_field", "config": {"path": "profile@traits.old"}},
        {"id": "tag", "action": "add_tag", "config": {"tag": "buyer-{{event@type}}"}},
        {"id": "untag", "action": "remove_tag", "config": {"tag": "stale"}},
        {"id": "seg", "action": "add_segment", "config": {"segment": "vip"}},
        {"id": "unseg", "action": "remove_segment", "config": {"segment": "gone"}},
        {"id": "ctx", "action": "set_field", "config": {"path": "session@context.campaign.name", "value": "spring"}},
        {"id": "prop", "action": "increment", "config": {"path": "session@properties.views"}},
        {"id": "sdel", "action": "delete_field", "config": {"path": "session@context.browser"}},
        {
            "id": "tpl",
            "action": "template",
            "config": {
                "template": "Hi {{profile@traits.name}}, {{event@properties.total}} {{memory@info.k}}{{memory@x}}",
                "target": "memory@message",
            },
        },
        {"id": "log", "action": "log_message", "config": {"level": "warning", "message": "{{memory@message}}"}},
    )
    result = run(data, context(properties={"total": 150}, profile=profile, session=session))
    assert result.status == "ok", result.error
    assert result.profile["traits"] == {"name": "Ann", "total": 150, "colours": ["red", "green"]}
    assert result.profile["data"] == {"name": "Ann"}
    assert result.profile["stats"]["spent"] == 149.5
    assert result.profile["tags"] == ["buyer-purchase"] and result.profile["segments"] == ["vip"]
    assert [op.op for op in result.profile_operations] == [
        "set",
        "set",
        "increment",
        "increment",
        "append",
        "remove",
        "delete",
        "add_tag",
        "remove",
        "append",
        "remove",
    ]
    assert result.profile_operations[3].value == -0.5
    assert result.session_context == {"campaign": {"name": "spring"}, "browser": None}
    assert result.session_properties == {"views": 1}
    assert result.session["context"] == {"campaign": {"name": "spring"}}
    assert result.memory["info"] == {"n": "Ann", "k": [1]}
    assert result.memory["message"] == "Hi Ann, 150 [1]"
    assert [(log.level, log.message) for log in result.logs] == [("warning", "Hi Ann, 150 [1]")]
    nocopy = next(t for t in result.trace if t.node_id == "nocopy")
    assert nocopy.status == "ok" and nocopy.input["value"] is None
    # Storage applies the recorded operations to the same profile the run ended with.
    stored = apply_changes(profile, Applied(), [ProfileChange("p-1", "j", result.profile_operations)], now=NOW)
    assert stored.failed == []
    assert {k: v for k, v in stored.document.items() if k != "metadata"} == {
        k: v for k, v in result.profile.items() if k != "metadata"
    }


def test_recorded_values_do_not_change_with_memory():
    data = chain(
        {"id": "m", "action": "set_field", "config": {"path": "memory@obj", "value": {"a": 1}}},
        {"id": "p", "action": "set_field", "config": {"path": "profile@data.obj", "value": "memory@obj"}},
        {"id": "m2", "action": "set_field", "config": {"path": "memory@obj.a", "value": 2}},
    )
    result = run(data)
    assert result.profile_operations[0].value == {"a": 1} and result.profile["data"]["obj"] == {"a": 1}
    assert result.memory == {"obj": {"a": 2}}


def test_increment_by_something_not_a_number_fails():
    data = chain({"id": "inc", "action": "increment", "config": {"path": "memory@n", "by": "event@properties.x"}})
    assert run(data, context(properties={"x": "3"})).error == "node 'inc' (increment): `by` is '3', not a number"


def test_an_empty_tag_fails():
    data = chain({"id": "t", "action": "add_tag", "config": {"tag": "{{event@properties.nope}}"}})
    assert "rendered to an empty string" in run(data).error


def test_remote_call_with_headers_and_templates():
    data = chain(
        {
            "id": "call",
            "action": "remote_call",
            "config": {
                "url": "https://crm.test/p/{{profile@id}}",
                "method": "PUT",
                "headers": {"Authorization": "Bearer {{payload@source.id}}"},
                "body": ["event@type", {"note": "total {{event@properties.total}}"}, 3],
                "timeout": 2.5,
            },
        }
    )
    [delivery] = run(data, context(properties={"total": 9})).deliveries
    assert delivery.request == {
        "method": "PUT",
        "url": "https://crm.test/p/p-1",
        "headers": {"Authorization": "Bearer locust-test"},
        "body": ["purchase", {"note": "total 9"}, 3],
        "timeout": 2.5,
    }


def test_remote_call_encodes_values_in_its_url_but_takes_a_whole_url_as_it_is():
    url = "https://crm.test/p/{{event@properties.path}}?q={{event@properties.q}}&n={{event@properties.n}}"
    data = chain({"id": "call", "action": "remote_call", "config": {"url": url}})
    properties = {"path": "../admin", "q": "a b&admin=1#x", "n": 5}
    [delivery] = run(data, context(properties=properties)).deliveries
    assert delivery.request["url"] == "https://crm.test/p/..%2Fadmin?q=a%20b%26admin%3D1%23x&n=5"
    data = chain({"id": "call", "action": "remote_call", "config": {"url": "{{event@properties.url}}"}})
    [delivery] = run(data, context(properties={"url": "https://hooks.test/a?b=c d"})).deliveries
    assert delivery.request["url"] == "https://hooks.test/a?b=c d"  # the whole URL: as it is


def test_remote_call_refuses_a_rendered_url_or_header_that_is_not_safe():
    data = chain({"id": "call", "action": "remote_call", "config": {"url": "{{event@properties.url}}"}})
    assert "is not an http(s) URL" in run(data, context(properties={"url": "file:///etc/passwd"})).error
    data = chain(
        {
            "id": "call",
            "action": "remote_call",
            "config": {"url": "http://x.test/", "headers": {"X": "{{event@properties.h}}"}},
        }
    )
    assert "must be one line" in run(data, context(properties={"h": "a\r\nEvil: 1"})).error


def test_send_email():
    data = chain(
        {
            "id": "mail",
            "action": "send_email",
            "config": {
                "to": "{{event@properties.email}}",
                "subject": "Thanks {{profile@traits.name}}",
                "body": "Total: {{event@properties.total}}",
            },
        }
    )
    profile = context().profile
    profile["traits"]["name"] = "Ann"
    result = run(data, context(properties={"email": "ann@example.test", "total": 20}, profile=profile))
    [delivery] = result.deliveries
    assert delivery.kind == "email" and delivery.summary == "email to ann@example.test"
    assert delivery.request == {"to": "ann@example.test", "subject": "Thanks Ann", "body": "Total: 20"}
    bad = run(data, context(properties={"email": "ann@example.test\nBcc: x@y.test"}))
    assert bad.status == "failed" and bad.deliveries == []


def test_schedule_event():
    data = chain(
        {
            "id": "later",
            "action": "schedule_event",
            "config": {
                "event_type": "reminder",
                "properties": {"total": "event@properties.total"},
                "delay_seconds": 3600,
            },
        }
    )
    [scheduled] = run(data, context(properties={"total": 5})).scheduled
    assert scheduled.node_id == "later" and scheduled.event_type == "reminder"
    assert scheduled.properties == {"total": 5} and scheduled.delay_seconds == 3600
    assert scheduled.due == "2024-05-01T13:00:00+00:00"


def test_end_stops_its_branch_only():
    data = {
        "nodes": [
            {"id": "start", "action": "start"},
            {"id": "stop", "action": "end"},
            {"id": "go", "action": "add_tag", "config": {"tag": "t"}},
        ],
        "edges": [{"from": "start", "to": "stop"}, {"from": "start", "to": "go"}],
    }
    result = run(data)
    assert statuses(result) == {"start": "ok", "stop": "ok", "go": "ok"} and result.trace[1].port is None


def test_memory_can_drive_a_condition_and_a_run_without_changes_is_unchanged():
    data = {
        "nodes": [
            {"id": "start", "action": "start"},
            {"id": "flag", "action": "set_field", "config": {"path": "memory@flag", "value": "event@properties.flag"}},
            {
                "id": "check",
                "action": "if",
                "config": {"condition": {"path": "memory@flag", "op": "equals", "value": True}},
            },
            {"id": "log", "action": "log_message", "config": {"message": "flagged"}},
        ],
        "edges": [
            {"from": "start", "to": "flag"},
            {"from": "flag", "to": "check"},
            {"from": "check", "to": "log", "port": "true"},
        ],
    }
    flagged = run(data, context(properties={"flag": True}))
    assert [log.message for log in flagged.logs] == ["flagged"] and not flagged.changed
    assert statuses(run(data, context(properties={"flag": False})))["log"] == "skipped"
