"""Middleware of the HTTP API: X-Process-Time, a request id, and JSON for unexpected errors."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger("tracking.api")

# A caller's (or proxy's) X-Request-ID is kept when it is a plain token, so its logs and
# ours can be joined; anything else is replaced, never echoed.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class ProcessTimeMiddleware:
    """X-Process-Time on every response: how long the server spent on the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        response["X-Process-Time"] = f"{time.perf_counter() - started:.6f}"
        return response


class RequestIdMiddleware:
    """Gives each request an id (X-Request-ID, answered back), and turns an unexpected
    exception outside the admin into a JSON 500 naming that id, logged with it: a JSON
    client never gets Django's HTML error page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        request.request_id = given if REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if request.path.startswith("/admin/"):
            return None  # the admin keeps Django's own error handling
        request_id = getattr(request, "request_id", "-")
        logger.error(
            "Unexpected error on %s %s, request id %s", request.method, request.path, request_id, exc_info=exception
        )
        return JsonResponse(
            {"detail": "Internal server error. Quote the request id when you report it.", "request_id": request_id},
            status=500,
        )
