"""Fault injection for crash tests: FAULT_INJECT="<point>:<seconds>" pauses a worker there.

The crash tests kill a worker with SIGKILL at a known point of a batch (after the
store wrote, before the broker was acknowledged). Without a pause the window is a few
milliseconds wide and the test could not be sure it hit it. Unset, this does nothing.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

logger = logging.getLogger(__name__)

# The one list of points: the settings check FAULT_INJECT against it at start-up.
POINTS = frozenset({"after_profiles_saved", "before_ack", "workflow_runs_recorded"})


def pause_at(point: str) -> None:
    if point not in POINTS:  # a typo here would make a crash test pass without pausing
        raise ValueError(f"unknown fault injection point {point!r}")
    configured: tuple[str, float] | None = settings.FAULT_INJECT
    if configured and configured[0] == point:
        logger.warning("Fault injection: pausing %.1fs at %s", configured[1], point)
        time.sleep(configured[1])
