"""Health checks for load balancers and Kubernetes probes: /healthz and /readyz.

No authentication (probes carry none), never cached, and bounded in time: each readiness
check runs in its own thread and counts as failed after READYZ_TIMEOUT_SECONDS, so a hung
backend makes /readyz answer 503 quickly instead of hanging the probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.db import connection
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from queueing.broker import get_broker
from queueing.topics import FUNCTIONS
from storage.store import get_store

# Shared by the checks of all requests: a hung check keeps its thread, not a new one per probe.
_POOL = ThreadPoolExecutor(max_workers=6, thread_name_prefix="readyz")


def check_database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # the check's thread has its own connection: do not leak it


def check_broker() -> None:
    try:
        get_broker().backlog(topic=FUNCTIONS)
    finally:
        connection.close()  # the database broker queries through this thread's connection


def check_store() -> None:
    try:
        get_store().ping()
    finally:
        connection.close()


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "broker": check_broker, "store": check_store}


def run_checks(checks: dict[str, Callable[[], None]], timeout: float) -> dict[str, dict[str, object]]:
    """{name: {"ok": bool, "seconds": float, "error"?: str}}; all checks run at once."""
    started = time.monotonic()
    futures = {name: _POOL.submit(check) for name, check in checks.items()}
    results: dict[str, dict[str, object]] = {}
    for name, future in futures.items():
        remaining = max(0.0, timeout - (time.monotonic() - started))
        try:
            future.result(timeout=remaining)
            results[name] = {"ok": True}
        except FutureTimeout:
            results[name] = {"ok": False, "error": f"no answer within {timeout:g}s"}
        except Exception as exc:
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        results[name]["seconds"] = round(time.monotonic() - started, 3)
    return results


CheckSerializer = inline_serializer(
    "ReadinessCheck",
    {
        "ok": serializers.BooleanField(),
        "seconds": serializers.FloatField(),
        "error": serializers.CharField(required=False, help_text="Why the check failed."),
    },
)
ReadySerializer = inline_serializer(
    "Readiness",
    {
        "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
        "failed": serializers.ListField(child=serializers.CharField()),
        "checks": serializers.DictField(child=CheckSerializer),
    },
)


@method_decorator(never_cache, name="dispatch")
class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Liveness: the process answers",
        description="Touches no database: a restart would not fix a database outage.",
        responses={200: inline_serializer("Health", {"status": serializers.CharField()})},
        tags=["operations"],
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


@method_decorator(never_cache, name="dispatch")
class ReadyView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Readiness: database, broker and store reachable",
        responses={
            200: ReadySerializer,
            503: OpenApiResponse(ReadySerializer, description="`failed` names the checks that failed; each says why."),
        },
        tags=["operations"],
    )
    def get(self, request: Request) -> Response:
        results = run_checks(CHECKS, settings.READYZ_TIMEOUT_SECONDS)
        failed = [name for name, result in results.items() if not result["ok"]]
        body = {"status": "unavailable" if failed else "ok", "failed": failed, "checks": results}
        return Response(body, status=503 if failed else 200)
