"""GET /queue/{namespace}/{topic}/backlog: unacknowledged messages per partition and subscription."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from queueing.broker import get_broker
from queueing.selectors import topic_backlog
from queueing.topics import find_topic


class PartitionBacklogSerializer(serializers.Serializer):
    partition = serializers.CharField()
    subscription = serializers.CharField()
    count = serializers.IntegerField()


class BacklogSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    backlog = PartitionBacklogSerializer(many=True)


class BacklogView(APIView):
    """Staff only (admin session or API token); anonymous callers get 401."""

    @extend_schema(
        summary="Backlog of a topic per partition",
        description="Topics: system/collector, system/functions, system/workflow and their -DLQ topics.",
        responses={
            200: BacklogSerializer,
            401: OpenApiResponse(description="No credentials."),
            403: OpenApiResponse(description="Not a staff user."),
            404: OpenApiResponse(inline_serializer("UnknownTopic", {"detail": serializers.CharField()})),
        },
        tags=["queue"],
    )
    def get(self, request: Request, namespace: str, topic: str) -> Response:
        found = find_topic(namespace=namespace, name=topic)
        if found is None:
            return Response({"detail": f"Unknown topic {namespace}/{topic}."}, status=404)
        return Response(BacklogSerializer(topic_backlog(broker=get_broker(), topic=found)).data)
