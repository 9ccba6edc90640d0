"""DELETE /api/profiles/<id>: deletes a profile with its sessions and events (GDPR)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from storage.services import delete_profile
from storage.store import get_store

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
            401: OpenApiResponse(description="No credentials."),
            403: OpenApiResponse(description="Not a staff user."),
        },
        tags=["storage"],
    )
    def delete(self, request: Request, profile_id: str) -> Response:
        deleted = delete_profile(profile_id, store=get_store(), deleted_by=request.user.get_username())
        # 200 even when nothing was stored yet: the tombstone still stops what is queued.
        return Response(
            {
                "profile": profile_id,
                "deleted": {"profiles": deleted.profiles, "sessions": deleted.sessions, "events": deleted.events},
            }
        )
