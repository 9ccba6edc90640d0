"""Fault injection for crash tests: FAULT_INJECT="<point>:<seconds>" pauses a worker there.

The crash tests kill a worker with SIGKILL at a known point of a batch (after the
store wrote, before the broker was acknowledged). Without a pause the window is a few
milliseconds wide and the test could not be sure it hit it. Unset, this does nothing.
"""

from __future__ import annotations

import functools
import logging
import time

from django.conf import settings

logger = logging.getLogger(__name__)

POINTS = {"after_profiles_saved", "before_ack"}


@functools.cache
def _configured() -> tuple[str, float] | None:
    if not settings.FAULT_INJECT:
        return None
    point, _, seconds = settings.FAULT_INJECT.partition(":")
    if point not in POINTS:
        raise ValueError(f"FAULT_INJECT point {point!r} is unknown; known points: {', '.join(sorted(POINTS))}")
    return point, float(seconds or 0)


def pause_at(point: str) -> None:
    configured = _configured()
    if configured and configured[0] == point:
        logger.warning("Fault injection: pausing %.1fs at %s", configured[1], point)
        time.sleep(configured[1])
