"""Reads of the storage app that are not documents: the deleted profiles."""

from __future__ import annotations

from collections.abc import Iterable

from storage.models import ProfileTombstone


def tombstoned(profile_ids: Iterable[str]) -> set[str]:
    """Which of these profiles were deleted for good; one query."""
    ids = {p for p in profile_ids if p}
    if not ids:
        return set()
    return set(ProfileTombstone.objects.filter(profile_id__in=ids).values_list("profile_id", flat=True))
