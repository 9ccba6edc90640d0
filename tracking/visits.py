"""What a new session tells about the visit: device, operating system, browser and bot flag
from the User-Agent (ua-parser), UTM parameters and page from the context, time zone."""

from __future__ import annotations

import copy
import functools
from typing import Any
from urllib.parse import parse_qs, urlparse

from ua_parser import parse

from storage.jobs import ProfileOperation

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def parse_user_agent(user_agent: str | None) -> dict[str, Any]:
    """A fresh dict each call: callers merge into it, and the parse is cached."""
    return copy.deepcopy(_parse_user_agent(user_agent))


@functools.lru_cache(maxsize=4096)
def _parse_user_agent(user_agent: str | None) -> dict[str, Any]:
    if not user_agent:
        return {"browser": None, "os": None, "device": None, "bot": False}
    result = parse(user_agent)
    agent, system, device = result.user_agent, result.os, result.device

    def version(part: Any) -> str | None:
        numbers = [n for n in (part.major, part.minor, part.patch) if n]
        return ".".join(numbers) or None

    return {
        "browser": {"name": agent.family, "version": version(agent)} if agent else None,
        "os": {"name": system.family, "version": version(system)} if system else None,
        "device": {"name": device.family, "brand": device.brand, "model": device.model} if device else None,
        "bot": bool(device and device.family == "Spider"),
    }


def visit_context(*, payload_context: dict[str, Any], user_agent: str | None) -> dict[str, Any]:
    """What the server derives for a new session (it wins over the same keys sent by the client)."""
    page = payload_context.get("page") if isinstance(payload_context.get("page"), dict) else None
    url = page.get("url") if page else None
    query = parse_qs(urlparse(url).query) if isinstance(url, str) else {}
    time = payload_context.get("time") if isinstance(payload_context.get("time"), dict) else {}
    return {
        **parse_user_agent(user_agent),
        "utm": {key[4:]: query[key][0] for key in UTM_KEYS if key in query},
        "page": page,
        "time": {"tz": time.get("tz")},
    }


def visit_operations(*, now: str, event_id: str) -> list[ProfileOperation]:
    """metadata.time.visit {last, current, count} for a new visit, as operations of its
    visit-started event."""
    return [
        ProfileOperation("copy", "metadata.time.visit.last", "metadata.time.visit.current", event=event_id),
        ProfileOperation("set", "metadata.time.visit.current", now, event=event_id),
        ProfileOperation("increment", "metadata.time.visit.count", 1, event=event_id),
    ]
