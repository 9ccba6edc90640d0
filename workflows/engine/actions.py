"""The action registry: what each node of a workflow can do.

An action is pure: it reads the run's data (event, payload, session, profile, memory) and
returns an ActionOutcome saying which output port it took and what it wants done (writes,
delivery requests, scheduled events, log lines). The executor applies the writes, so every
profile change becomes a storage operation with the storage's own semantics, and nothing
external happens inside the engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from tracking.rules.conditions import check_condition, matches
from tracking.rules.paths import WORKFLOW_ROOTS, resolve
from workflows.engine.templates import (
    PLACEHOLDER_RE,
    Target,
    check_read,
    check_value,
    parse_target,
    render_string,
    render_url,
    render_value,
)

ERROR_PORT = "error"  # every action's implicit port, taken when it fails under on_error=error_port
LOG_LEVELS = ("debug", "info", "warning", "error")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_DELAY_SECONDS = 366 * 24 * 3600


class ActionFailed(Exception):
    """The node fails with this message (the run's on_error decides what happens next)."""


@dataclass(frozen=True)
class Write:
    """One change: `op` is a storage.documents operation (set, append, add_tag, remove,
    increment, delete) applied at `target`."""

    target: Target
    op: str
    value: Any = None


@dataclass(frozen=True)
class DeliveryRequest:
    """A call to an external system the outbox makes after the run (never the engine).
    request: http {method, url, headers, body, timeout}; email {to, subject, body}."""

    node_id: str
    kind: str  # "http" | "email"
    request: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class ScheduledEvent:
    node_id: str
    event_type: str
    properties: dict[str, Any]
    delay_seconds: int
    due: str | None  # the run's `now` plus the delay (None when `now` is not an ISO time)


@dataclass(frozen=True)
class LogEntry:
    node_id: str
    level: str
    message: str


@dataclass(frozen=True)
class ActionContext:
    """What an action may read. `sources` maps event, payload, session, profile and memory
    to the run's current data; actions must not modify it."""

    node_id: str
    sources: Mapping[str, Any]
    run_key: str
    now: str


@dataclass
class ActionOutcome:
    port: str
    input: dict[str, Any] = field(default_factory=dict)  # the rendered config, for the trace
    writes: list[Write] = field(default_factory=list)
    deliveries: list[DeliveryRequest] = field(default_factory=list)
    scheduled: list[ScheduledEvent] = field(default_factory=list)
    logs: list[LogEntry] = field(default_factory=list)
    discard_profile_changes: bool = False


Run = Callable[[ActionContext, dict[str, Any]], ActionOutcome]
Check = Callable[[dict[str, Any]], list[str]]


def _no_checks(config: dict[str, Any]) -> list[str]:
    return []


@dataclass(frozen=True)
class ActionSpec:
    name: str
    description: str
    output_ports: tuple[str, ...]  # the first is the default
    config_schema: dict[str, Any]
    run: Run
    # Checks the schema cannot express (paths, references), run once the schema passed;
    # messages start with the config path, e.g. "config.path: ...".
    check: Check = _no_checks

    @property
    def default_port(self) -> str | None:
        return self.output_ports[0] if self.output_ports else None


# --- schema pieces -------------------------------------------------------------------------

STRING = {"type": "string", "minLength": 1}


def _object(properties: dict[str, Any], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


# --- checks --------------------------------------------------------------------------------


def _target_problem(config: dict[str, Any], key: str, *, list_operation: bool = False) -> list[str]:
    try:
        parse_target(config[key], list_operation=list_operation)
    except ValueError as exc:
        return [f"config.{key}: {exc}"]
    return []


def _read_problem(config: dict[str, Any], key: str) -> list[str]:
    try:
        check_read(config[key])
    except ValueError as exc:
        return [f"config.{key}: {exc}"]
    return []


def _values_problems(config: dict[str, Any], *keys: str) -> list[str]:
    return [problem for key in keys if key in config for problem in check_value(config[key], f"config.{key}")]


def _sources(ctx: ActionContext) -> dict[str, Any]:
    return dict(ctx.sources)


def _text(ctx: ActionContext, template: str) -> str:
    return render_string(template, _sources(ctx))


def _single_line(value: str, what: str) -> str:
    # A line break in a header value or mail header would let data inject headers.
    if "\r" in value or "\n" in value:
        raise ActionFailed(f"{what} must be one line, got {value!r}")
    return value


# --- flow ----------------------------------------------------------------------------------


def _run_start(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    return ActionOutcome(port="out")


def _run_end(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    return ActionOutcome(port="")  # no output ports: nothing follows


def _check_if(config: dict[str, Any]) -> list[str]:
    try:
        check_condition(config["condition"], "config.condition", roots=WORKFLOW_ROOTS)
    except ValueError as exc:
        return [str(exc)]
    return []


def _run_if(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    result = matches(config["condition"], _sources(ctx))
    return ActionOutcome(port="true" if result else "false", input={"condition": config["condition"], "result": result})


def _run_data_exists(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    value = resolve(config["path"], _sources(ctx))
    return ActionOutcome(port="true" if value is not None else "false", input={"path": config["path"], "value": value})


def _run_throw_error(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    raise ActionFailed(_text(ctx, config["message"]))


def _run_log_message(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    level, message = config.get("level", "info"), _text(ctx, config["message"])
    return ActionOutcome(
        port="out", input={"level": level, "message": message}, logs=[LogEntry(ctx.node_id, level, message)]
    )


# --- data ----------------------------------------------------------------------------------


def _write_outcome(target: str, op: str, value: Any, *, list_operation: bool = False) -> ActionOutcome:
    parsed = parse_target(target, list_operation=list_operation)
    return ActionOutcome(
        port="out", input={"path": target, "value": value}, writes=[Write(target=parsed, op=op, value=value)]
    )


def _run_set_field(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    return _write_outcome(config["path"], "set", render_value(config["value"], _sources(ctx)))


def _run_copy_field(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    value = resolve(config["from"], _sources(ctx))
    if value is None:  # a missing source would otherwise erase the target
        return ActionOutcome(port="out", input={"from": config["from"], "to": config["to"], "value": None})
    outcome = _write_outcome(config["to"], "set", value)
    outcome.input = {"from": config["from"], "to": config["to"], "value": value}
    return outcome


def _amount(ctx: ActionContext, config: dict[str, Any]) -> int | float:
    by = render_value(config.get("by", 1), _sources(ctx))
    if isinstance(by, bool) or not isinstance(by, int | float):
        raise ActionFailed(f"`by` is {by!r}, not a number")
    return by


def _run_increment(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    return _write_outcome(config["path"], "increment", _amount(ctx, config))


def _run_decrement(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    # Storage knows only increment: decrementing is incrementing by the negative amount.
    return _write_outcome(config["path"], "increment", -_amount(ctx, config))


def _run_append(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    value = render_value(config["value"], _sources(ctx))
    return _write_outcome(config["path"], "append", value, list_operation=True)


def _run_remove(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    value = render_value(config["value"], _sources(ctx))
    return _write_outcome(config["path"], "remove", value, list_operation=True)


def _run_delete_field(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    return _write_outcome(config["path"], "delete", None)


def _run_template(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    return _write_outcome(config["target"], "set", _text(ctx, config["template"]))


def _run_discard(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    return ActionOutcome(port="out", discard_profile_changes=True)


# --- profile tags and segments -------------------------------------------------------------


def _label(ctx: ActionContext, template: str, what: str) -> str:
    value = _text(ctx, template).strip()
    if not value:
        raise ActionFailed(f"the {what} {template!r} rendered to an empty string")
    return value


def _list_action(*, key: str, root: str, op: str) -> Run:
    def run(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
        value = _label(ctx, config[key], key)
        return ActionOutcome(
            port="out", input={key: value}, writes=[Write(target=Target("profile", root), op=op, value=value)]
        )

    return run


# --- external ------------------------------------------------------------------------------


def _check_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    return None


def _check_remote_call(config: dict[str, Any]) -> list[str]:
    problems = _values_problems(config, "url", "body")
    if not PLACEHOLDER_RE.search(config["url"]) and (problem := _check_url(config["url"])):
        problems.append(f"config.url: {problem}")
    for name, value in (config.get("headers") or {}).items():
        if not HEADER_NAME_RE.match(name):
            problems.append(f"config.headers: {name!r} is not a header name")
        problems += check_value(value, f"config.headers.{name}")
    return problems


def _run_remote_call(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    url = render_url(config["url"], _sources(ctx))
    if problem := _check_url(url):
        raise ActionFailed(problem)
    headers = {
        name: _single_line(_text(ctx, value), f"header {name}") for name, value in (config.get("headers") or {}).items()
    }
    method = config.get("method", "POST")
    request = {
        "method": method,
        "url": url,
        "headers": headers,
        "body": render_value(config.get("body"), _sources(ctx)),
        "timeout": config.get("timeout", 10),
    }
    delivery = DeliveryRequest(node_id=ctx.node_id, kind="http", request=request, summary=f"{method} {url}")
    return ActionOutcome(port="out", input=request, deliveries=[delivery])


def _check_send_email(config: dict[str, Any]) -> list[str]:
    problems = _values_problems(config, "to", "subject", "body")
    if not PLACEHOLDER_RE.search(config["to"]) and not EMAIL_RE.match(config["to"]):
        problems.append(f"config.to: {config['to']!r} is not an email address")
    return problems


def _run_send_email(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    to = _single_line(_text(ctx, config["to"]).strip(), "the recipient")
    if not EMAIL_RE.match(to):
        raise ActionFailed(f"the recipient {to!r} is not an email address")
    request = {
        "to": to,
        "subject": _single_line(_text(ctx, config["subject"]), "the subject"),
        "body": _text(ctx, config["body"]),
    }
    delivery = DeliveryRequest(node_id=ctx.node_id, kind="email", request=request, summary=f"email to {to}")
    return ActionOutcome(port="out", input=request, deliveries=[delivery])


def _due(now: str, delay_seconds: int) -> str | None:
    try:
        start = datetime.fromisoformat(now)
    except ValueError:
        return None
    return (start + timedelta(seconds=delay_seconds)).isoformat()


def _run_schedule_event(ctx: ActionContext, config: dict[str, Any]) -> ActionOutcome:
    properties = render_value(config.get("properties") or {}, _sources(ctx))
    delay = config.get("delay_seconds", 0)
    scheduled = ScheduledEvent(
        node_id=ctx.node_id,
        event_type=config["event_type"],
        properties=properties,
        delay_seconds=delay,
        due=_due(ctx.now, delay),
    )
    return ActionOutcome(
        port="out",
        input={"event_type": config["event_type"], "properties": properties, "delay_seconds": delay},
        scheduled=[scheduled],
    )


# --- the registry --------------------------------------------------------------------------

_PATH = {**STRING, "description": "where to write: profile@<path>, session@context.<path>, ..."}
_ANY = {"description": "a literal, a reference such as event@properties.x, or a {{...}} template"}
_TARGET_CHECK = {key: (lambda c, k=key: _target_problem(c, k)) for key in ("path", "to", "target")}


def _check_all(*checks: Check) -> Check:
    return lambda config: [problem for check in checks for problem in check(config)]


_LIST_VALUE_CHECK = _check_all(
    lambda c: _target_problem(c, "path", list_operation=True), lambda c: _values_problems(c, "value")
)


def _spec(
    name: str, description: str, ports: tuple[str, ...], schema: dict[str, Any], run: Run, check: Check = _no_checks
) -> ActionSpec:
    return ActionSpec(
        name=name, description=description, output_ports=ports, config_schema=schema, run=run, check=check
    )


def _build() -> dict[str, ActionSpec]:
    amount = {"type": ["number", "string"], "description": "a number or a reference to one (default 1)"}
    specs = [
        _spec(
            "start",
            "Where every run begins; exactly one per workflow. No config. Port: out.",
            ("out",),
            _object({}),
            _run_start,
        ),
        _spec(
            "end",
            "Ends a branch (other branches still run). No config. No output ports.",
            (),
            _object({}),
            _run_end,
        ),
        _spec(
            "if",
            "Branches on a condition in the pre-processing rules' format "
            '({"path": "event@properties.total", "op": "gte", "value": 100}, all/any/not; memory@ paths too). '
            "Config: condition. Ports: true, false.",
            ("true", "false"),
            _object({"condition": {"type": "object"}}, required=("condition",)),
            _run_if,
            _check_if,
        ),
        _spec(
            "data_exists",
            "Branches on whether a path holds a value (not missing, not null). Config: path "
            "(a reference such as profile@traits.email). Ports: true, false.",
            ("true", "false"),
            _object({"path": STRING}, required=("path",)),
            _run_data_exists,
            lambda c: _read_problem(c, "path"),
        ),
        _spec(
            "set_field",
            "Sets a field. Config: path (profile@..., session@context..., session@properties..., memory@...), "
            "value (a literal, a reference, or a {{...}} template; objects and lists of those). Port: out.",
            ("out",),
            _object({"path": _PATH, "value": _ANY}, required=("path", "value")),
            _run_set_field,
            _check_all(_TARGET_CHECK["path"], lambda c: _values_problems(c, "value")),
        ),
        _spec(
            "copy_field",
            "Copies a value. Config: from (a reference to read), to (a writable path). Nothing is "
            "written when the source is missing. Port: out.",
            ("out",),
            _object({"from": STRING, "to": _PATH}, required=("from", "to")),
            _run_copy_field,
            _check_all(lambda c: _read_problem(c, "from"), _TARGET_CHECK["to"]),
        ),
        _spec(
            "increment",
            "Adds to a number (a missing field counts as 0). Config: path (writable), by (a number or "
            "a reference to one, default 1). Port: out.",
            ("out",),
            _object({"path": _PATH, "by": amount}, required=("path",)),
            _run_increment,
            _check_all(_TARGET_CHECK["path"], lambda c: _values_problems(c, "by")),
        ),
        _spec(
            "decrement",
            "Subtracts from a number (stored as an increment by the negative amount). Config: path "
            "(writable), by (a number or a reference to one, default 1). Port: out.",
            ("out",),
            _object({"path": _PATH, "by": amount}, required=("path",)),
            _run_decrement,
            _check_all(_TARGET_CHECK["path"], lambda c: _values_problems(c, "by")),
        ),
        _spec(
            "append",
            "Adds a value (or each value of a list) to a list, skipping those already in it. Config: "
            "path (writable; profile@ids and profile@segments allowed as they are), value. Port: out.",
            ("out",),
            _object({"path": _PATH, "value": _ANY}, required=("path", "value")),
            _run_append,
            _LIST_VALUE_CHECK,
        ),
        _spec(
            "remove",
            "Removes a value (or each value of a list) from a list. Config: path (writable), value. Port: out.",
            ("out",),
            _object({"path": _PATH, "value": _ANY}, required=("path", "value")),
            _run_remove,
            _LIST_VALUE_CHECK,
        ),
        _spec(
            "delete_field",
            "Deletes a field (a session field is set to null: sessions are merged). Config: path (writable). "
            "Port: out.",
            ("out",),
            _object({"path": _PATH}, required=("path",)),
            _run_delete_field,
            _TARGET_CHECK["path"],
        ),
        _spec(
            "add_tag",
            "Adds a tag to the profile's tags. Config: tag (text, {{...}} placeholders allowed). Port: out.",
            ("out",),
            _object({"tag": STRING}, required=("tag",)),
            _list_action(key="tag", root="tags", op="add_tag"),
            lambda c: _values_problems(c, "tag"),
        ),
        _spec(
            "remove_tag",
            "Removes a tag from the profile's tags. Config: tag (text, {{...}} placeholders allowed). Port: out.",
            ("out",),
            _object({"tag": STRING}, required=("tag",)),
            _list_action(key="tag", root="tags", op="remove"),
            lambda c: _values_problems(c, "tag"),
        ),
        _spec(
            "add_segment",
            "Adds the profile to a segment (profile segments). Config: segment (text, {{...}} allowed). Port: out.",
            ("out",),
            _object({"segment": STRING}, required=("segment",)),
            _list_action(key="segment", root="segments", op="append"),
            lambda c: _values_problems(c, "segment"),
        ),
        _spec(
            "remove_segment",
            "Removes the profile from a segment. Config: segment (text, {{...}} allowed). Port: out.",
            ("out",),
            _object({"segment": STRING}, required=("segment",)),
            _list_action(key="segment", root="segments", op="remove"),
            lambda c: _values_problems(c, "segment"),
        ),
        _spec(
            "template",
            "Renders a text with {{event@properties.x}}-style placeholders and writes it. Config: template, "
            "target (writable, e.g. memory@message). Port: out.",
            ("out",),
            _object({"template": {"type": "string"}, "target": _PATH}, required=("template", "target")),
            _run_template,
            _check_all(_TARGET_CHECK["target"], lambda c: _values_problems(c, "template")),
        ),
        _spec(
            "log_message",
            "Records a line in the run log. Config: level (debug, info, warning, error; default info), "
            "message ({{...}} template). Port: out.",
            ("out",),
            _object({"level": {"enum": list(LOG_LEVELS)}, "message": {"type": "string"}}, required=("message",)),
            _run_log_message,
            lambda c: _values_problems(c, "message"),
        ),
        _spec(
            "throw_error",
            "Fails the node with a message ({{...}} template); on_error decides what follows. Config: message. "
            "Port: out (taken only with on_error=continue).",
            ("out",),
            _object({"message": STRING}, required=("message",)),
            _run_throw_error,
            lambda c: _values_problems(c, "message"),
        ),
        _spec(
            "remote_call",
            "Asks the outbox to call a URL after the run (an http delivery request; nothing is sent by the "
            "engine). Config: url ({{...}} allowed; each value percent-encoded unless it starts the url), "
            "method (GET, POST, PUT, PATCH, DELETE; default POST), "
            "headers (name -> {{...}} text), body (JSON with references and templates), timeout (seconds, "
            "default 10, at most 60). Port: out.",
            ("out",),
            _object(
                {
                    "url": STRING,
                    "method": {"enum": list(HTTP_METHODS)},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": _ANY,
                    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
                },
                required=("url",),
            ),
            _run_remote_call,
            _check_remote_call,
        ),
        _spec(
            "send_email",
            "Asks the outbox to send an email after the run (an email delivery request). Config: to, subject, "
            "body ({{...}} templates; to and subject must render to one line). Port: out.",
            ("out",),
            _object(
                {"to": STRING, "subject": {"type": "string"}, "body": {"type": "string"}},
                required=("to", "subject", "body"),
            ),
            _run_send_email,
            _check_send_email,
        ),
        _spec(
            "schedule_event",
            "Asks for an event to be tracked later for the same profile. Config: event_type, properties "
            "(JSON with references and templates, default {}), delay_seconds (default 0, at most 366 days). "
            "Port: out.",
            ("out",),
            _object(
                {
                    "event_type": {"type": "string", "minLength": 1, "maxLength": 128},
                    "properties": {"type": "object"},
                    "delay_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_DELAY_SECONDS},
                },
                required=("event_type",),
            ),
            _run_schedule_event,
            lambda c: _values_problems(c, "properties"),
        ),
        _spec(
            "discard_profile_changes",
            "Drops the profile changes collected so far in this run (later nodes may make new ones). "
            "No config. Port: out.",
            ("out",),
            _object({}),
            _run_discard,
        ),
    ]
    return {spec.name: spec for spec in specs}


ACTIONS: dict[str, ActionSpec] = _build()


def get_action(name: str) -> ActionSpec | None:
    return ACTIONS.get(name)


def action_reference() -> list[dict[str, Any]]:
    """For the README and the admin: every action's name, description, ports and config schema."""
    return [
        {
            "name": spec.name,
            "description": spec.description,
            "ports": list(spec.output_ports),
            "default_port": spec.default_port,
            "config_schema": spec.config_schema,
        }
        for spec in ACTIONS.values()
    ]
