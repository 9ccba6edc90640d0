"""DELETE /api/profiles/<id>: deletes a profile with its sessions and events (GDPR)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from storage.services import delete_profile
from storage.store import get_store
from tracking.validation import MAX_ID_LENGTH

DeletedSerializer = inline_serializer(
    "DeletedProfile",
    {
        "profile": serializers.CharField(),
        "deleted": inline_serializer(
            "DeletedCounts",
            {
                "profiles": serializers.IntegerField(),
                "sessions": serializers.IntegerField(),
                "events": serializers.IntegerField(),
            },
        ),
    },
)


class ProfileView(APIView):
    """Staff only (admin session or API token), like the backlog API."""

    @extend_schema(
        summary="Delete a profile with its sessions and events (GDPR)",
        description="200 also when nothing was stored yet (counts 0): the tombstone still stops what is queued.",
        responses={
            200: DeletedSerializer,
            400: OpenApiResponse(description=f"An id longer than {MAX_ID_LENGTH} characters, which no profile has."),
            401: OpenApiResponse(description="No credentials."),
            403: OpenApiResponse(description="Not a staff user."),
        },
        tags=["storage"],
    )
    def delete(self, request: Request, profile_id: str) -> Response:
        if len(profile_id) > MAX_ID_LENGTH:  # /track refuses such ids: nothing to delete, no tombstone
            return Response(
                {"detail": f"A profile id has at most {MAX_ID_LENGTH} characters; this one has {len(profile_id)}."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        deleted = delete_profile(profile_id, store=get_store(), deleted_by=request.user.get_username())
        # 200 even when nothing was stored yet: the tombstone still stops what is queued.
        return Response(
            {
                "profile": profile_id,
                "deleted": {"profiles": deleted.profiles, "sessions": deleted.sessions, "events": deleted.events},
            }
        )
