"""Writes of the storage app beyond the worker's: deleting a profile for good (GDPR)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from storage.models import ProfileTombstone
from storage.store import DeletedProfile, Store
from tracking.models import SessionIdentity

logger = logging.getLogger("storage.gdpr")


def delete_profile(profile_id: str, *, store: Store, deleted_by: str = "") -> DeletedProfile:
    """Deletes the profile, its sessions and its events, and keeps them deleted.

    The tombstone is committed first: from then on the background worker drops whatever is
    still queued for the profile, and a batch that was being stored meanwhile deletes what
    it wrote (it checks again after writing). The session registry forgets the profile, so
    a returning session, or a client sending this profile id, gets a new profile.
    """
    with transaction.atomic():
        ProfileTombstone.objects.update_or_create(
            profile_id=profile_id, defaults={"deleted_at": timezone.now(), "deleted_by": deleted_by}
        )
        SessionIdentity.objects.filter(profile_id=profile_id).delete()
    deleted = store.delete_profile(profile_id)
    logger.info(
        "Profile %s deleted by %s: %d profile, %d sessions, %d events",
        profile_id, deleted_by or "?", deleted.profiles, deleted.sessions, deleted.events,
    )  # fmt: skip
    return deleted
