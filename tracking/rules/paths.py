"""References into the data of one event: `event@properties.product.id`, `payload@context.page.url`,
`session@context.browser`, `profile@traits.name`. A missing path gives None, never an exception."""

from __future__ import annotations

import functools
import re
from typing import Any

ROOTS = ("event", "payload", "session", "profile")
# Workflows also read and write `memory@...`, a scratch object of one run. The pre-processing
# rules keep ROOTS: every function below defaults to them, so what rules accept is unchanged.
WORKFLOW_ROOTS = (*ROOTS, "memory")


@functools.cache
def reference_re(roots: tuple[str, ...] = ROOTS) -> re.Pattern[str]:
    return re.compile(rf"^({'|'.join(map(re.escape, roots))})@([A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*)$")


REFERENCE_RE = reference_re(ROOTS)
PROFILE_ROOTS = ("data", "traits", "ids", "stats", "segments", "interests", "consents", "aux", "misc")
LIST_ROOTS = ("ids", "segments")  # the roots that are lists themselves
PROFILE_PATH_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def is_reference(value: Any, *, roots: tuple[str, ...] = ROOTS) -> bool:
    return isinstance(value, str) and reference_re(roots).match(value) is not None


def check_reference(value: Any, *, roots: tuple[str, ...] = ROOTS) -> str:
    """Returns the reference, or raises ValueError saying what a reference looks like."""
    if not is_reference(value, roots=roots):
        raise ValueError(
            f"{value!r} is not a path: use <root>@<dot.path> with root one of {', '.join(roots)}, "
            "for example event@properties.product.id"
        )
    return value


def check_profile_path(value: Any, *, list_operation: bool = False) -> str:
    """A path under one of the allowed roots. A root alone only for appending to ids or
    segments: setting a whole root (e.g. stats) would break every later update of it."""
    if not isinstance(value, str) or not PROFILE_PATH_RE.match(value):
        raise ValueError(f"{value!r} is not a profile path: use a dot path such as traits.email")
    if value.split(".", 1)[0] not in PROFILE_ROOTS:
        raise ValueError(f"profile path {value!r} must start with one of: {', '.join(PROFILE_ROOTS)}")
    if "." not in value and not (list_operation and value in LIST_ROOTS):
        raise ValueError(
            f"profile path {value!r} is a whole root: name a field in it, such as {value}.name"
            + (f" (only {' and '.join(LIST_ROOTS)} take append and add_tag as they are)" if list_operation else "")
        )
    return value


def get_path(data: Any, path: str) -> Any:
    node = data
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


def resolve(reference: str, sources: dict[str, Any]) -> Any:
    root, path = reference.split("@", 1)
    return get_path(sources.get(root), path)


def render(template: Any, sources: dict[str, Any], *, roots: tuple[str, ...] = ROOTS) -> Any:
    """A template with references replaced by their values; everything else is kept as written."""
    if isinstance(template, dict):
        return {key: render(value, sources, roots=roots) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, sources, roots=roots) for value in template]
    if is_reference(template, roots=roots):
        return resolve(template, sources)
    return template


def check_template(template: Any, where: str = "template", *, roots: tuple[str, ...] = ROOTS) -> None:
    """Raises ValueError for a string that looks like a reference (has '@') but is not one."""
    if isinstance(template, dict):
        for key, value in template.items():
            check_template(value, f"{where}.{key}", roots=roots)
    elif isinstance(template, list):
        for index, value in enumerate(template):
            check_template(value, f"{where}[{index}]", roots=roots)
    elif isinstance(template, str) and "@" in template and template.split("@", 1)[0] in roots:
        try:
            check_reference(template, roots=roots)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
