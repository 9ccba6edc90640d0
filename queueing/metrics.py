"""Pure arithmetic of the console's numbers: rates from two samples, the age of the oldest
waiting message, which sample to compare with. No database: unit-tested on their own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    at: float  # epoch seconds
    value: float


def rate(earlier: Point | None, later: Point | None) -> float | None:
    """Per second between two readings of a cumulative counter. None when there is no pair,
    no time between them, or the counter went back (a restarted Pulsar broker, deleted
    heartbeat rows): a negative rate would be a lie, and zero too."""
    if earlier is None or later is None or later.at <= earlier.at or later.value < earlier.value:
        return None
    return (later.value - earlier.value) / (later.at - earlier.at)


def point_before(points: Sequence[Point], at: float) -> Point | None:
    """The latest point taken at or before `at`, else the oldest one (a shorter window beats
    no number while the samples are younger than the window). `points` in time order."""
    if not points:
        return None
    earlier = [p for p in points if p.at <= at]
    return earlier[-1] if earlier else points[0]


def oldest_age(oldest_at: float | None, *, now: float, total: int) -> float | None:
    """Seconds the oldest waiting message has waited; None when nothing waits (or unknown)."""
    if total <= 0 or oldest_at is None:
        return None
    return max(0.0, now - oldest_at)
