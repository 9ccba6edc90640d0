"""References, `{{...}}` string templates and writable targets of workflow actions.

Reads reuse the pre-processing rules' paths (tracking.rules.paths) with one more root,
`memory@`, the scratch object of one run. Writes go to a `Target`: profile paths limited
as the rules limit them, the session's context and properties, or memory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tracking.rules.paths import (
    WORKFLOW_ROOTS,
    check_profile_path,
    check_reference,
    is_reference,
    resolve,
)

PLACEHOLDER_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
READ_ONLY_ROOTS = ("event", "payload")
SESSION_PARTS = ("context", "properties")


def is_workflow_reference(value: Any) -> bool:
    return is_reference(value, roots=WORKFLOW_ROOTS)


def check_read(value: Any) -> str:
    """A reference to read from (any root, memory included)."""
    return check_reference(value, roots=WORKFLOW_ROOTS)


def check_value(value: Any, where: str) -> list[str]:
    """Problems of a value template, each prefixed with its config path (`where`): strings that
    look like references but are not, and `{{...}}` placeholders that are not references."""
    if isinstance(value, dict):
        return [problem for key, item in value.items() for problem in check_value(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [problem for index, item in enumerate(value) for problem in check_value(item, f"{where}[{index}]")]
    if not isinstance(value, str):
        return []
    if PLACEHOLDER_RE.search(value):
        return [f"{where}: {problem}" for inner in PLACEHOLDER_RE.findall(value) for problem in _placeholder(inner)]
    if "@" in value and value.split("@", 1)[0] in WORKFLOW_ROOTS:
        try:
            check_read(value)
        except ValueError as exc:
            return [f"{where}: {exc}"]
    return []


def _placeholder(inner: str) -> list[str]:
    try:
        check_read(inner)
    except ValueError as exc:
        return [f"placeholder {{{{{inner}}}}}: {exc}"]
    return []


def render_string(template: str, sources: dict[str, Any]) -> str:
    """`Hello {{profile@traits.name}}`: each placeholder replaced by its value as text
    (a missing value is empty; numbers, booleans, lists and objects as JSON)."""
    return PLACEHOLDER_RE.sub(lambda match: _placeholder_text(match.group(1), sources), template)


def render_url(template: str, sources: dict[str, Any]) -> str:
    """A URL template: each value percent-encoded, as RFC 6570's `{var}` does (only letters,
    digits and `-._~` stay), so data cannot add query parameters or path segments (`a b&c`
    becomes `a%20b%26c`). A placeholder that starts the template is the URL itself, taken
    as it is."""

    def text(match: re.Match[str]) -> str:
        value = _placeholder_text(match.group(1), sources)
        return value if match.start() == 0 else quote(value, safe="")

    return PLACEHOLDER_RE.sub(text, template)


def _placeholder_text(expression: str, sources: dict[str, Any]) -> str:
    value = resolve(expression, sources) if is_workflow_reference(expression) else None
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def render_value(value: Any, sources: dict[str, Any]) -> Any:
    """A literal, a reference (replaced by the value it names, of any type), a string with
    `{{...}}` placeholders (rendered to a string), or objects and lists of those."""
    if isinstance(value, dict):
        return {key: render_value(item, sources) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, sources) for item in value]
    if is_workflow_reference(value):
        return resolve(value, sources)
    if isinstance(value, str) and PLACEHOLDER_RE.search(value):
        return render_string(value, sources)
    return value


@dataclass(frozen=True)
class Target:
    """Where an action writes: root is profile, session or memory; path is inside it
    (for the session it starts with context. or properties.)."""

    root: str
    path: str

    def __str__(self) -> str:
        return f"{self.root}@{self.path}"


def parse_target(value: Any, *, list_operation: bool = False) -> Target:
    """Raises ValueError saying what can be written: profile@<path> (roots as the rules allow),
    session@context.<path>, session@properties.<path> or memory@<path>; event@ and payload@
    are read-only."""
    if isinstance(value, str) and "@" in value and value.split("@", 1)[0] in READ_ONLY_ROOTS:
        raise ValueError(
            f"{value!r} is read-only: write to profile@..., session@context..., session@properties... or memory@..."
        )
    if not is_workflow_reference(value):
        raise ValueError(
            f"{value!r} is not a writable path: use profile@traits.name, session@context.x, "
            "session@properties.x or memory@x"
        )
    root, path = value.split("@", 1)
    if root == "profile":
        check_profile_path(path, list_operation=list_operation)
    elif root == "session" and (path.split(".", 1)[0] not in SESSION_PARTS or "." not in path):
        raise ValueError(f"{value!r}: a session path is session@context.<field> or session@properties.<field>")
    return Target(root, path)
