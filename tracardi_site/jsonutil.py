"""Generic helpers over JSON-shaped dicts, shared by tracking, storage and workflows."""

from __future__ import annotations

import copy
from typing import Any


def deep_merge(target: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merges `update` into `target` in place (nested dicts key by key, anything else
    replaced by a copy) and returns `target`."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target
