"""Middleware of the HTTP API: X-Process-Time, a request id, and JSON for unexpected errors."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.core.exceptions import SuspiciousOperation
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


def assign_request_id(request: HttpRequest) -> None:
    given = request.headers.get("X-Request-ID", "")
    request.request_id = given if REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex


def unexpected_error(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The JSON 500 of an exception nothing expected, logged with the request's id."""
    request_id = getattr(request, "request_id", "-")
    logger.error(
        "Unexpected error on %s %s, request id %s", request.method, request.path, request_id, exc_info=exception
    )
    return JsonResponse(
        {"detail": "Internal server error. Quote the request id when you report it.", "request_id": request_id},
        status=500,
    )


class RequestIdMiddleware:
    """Gives each request an id (X-Request-ID, answered back), and turns an unexpected
    exception outside the admin into a JSON 500 naming that id, logged with it: a JSON
    client never gets Django's HTML error page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        assign_request_id(request)
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if request.path.startswith("/admin/"):
            return None  # the admin keeps Django's own error handling
        return unexpected_error(request, exception)


class TrackFastPathMiddleware:
    """Answers POST /track itself, without the middleware after it, URL resolving and DRF.

    /track is the endpoint every visitor of every site calls, and it uses none of sessions,
    authentication, messages, static files, CSRF or the pages' policy. With them, the URL
    resolver and DRF's request wrapping, a queued 10-event request cost 2.6 ms of CPU;
    without, 2.1 ms, and queue mode went from 0.32 to 0.40 of the bare endpoint
    (bench/api_ratio.py's server, alternating rounds). What of them applies to an API
    answer is done here by Django's own middleware: the HTTPS redirect, the host check and
    the security headers (SecurityMiddleware, CommonMiddleware, XFrameOptionsMiddleware),
    and DRF's Allow header. A Host not allowed is a JSON 400, as every other refusal of
    /track (down the chain it is Django's HTML page). ProcessTimeMiddleware and
    RequestIdMiddleware come before it and still wrap it. Every other request, OPTIONS
    /track and the webhook bridge included, goes down the whole chain.
    """

    PATH = "/track"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from django.middleware.clickjacking import XFrameOptionsMiddleware
        from django.middleware.common import CommonMiddleware
        from django.middleware.security import SecurityMiddleware

        from tracking.views import TrackView  # the views import the models: not at module load

        self.get_response = get_response
        self.security = SecurityMiddleware(get_response)
        self.common = CommonMiddleware(get_response)
        self.frame_options = XFrameOptionsMiddleware(get_response)
        self.track = TrackView()
        self.allow = ", ".join(self.track.allowed_methods)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path_info != self.PATH:
            return self.get_response(request)
        # As down the chain: a middleware's process_response sees what the ones after it
        # answered, and an early answer skips the ones after it.
        response = self.security.process_request(request) or self._after_security(request)
        return self.security.process_response(request, response)

    def _after_security(self, request: HttpRequest) -> HttpResponse:
        try:
            response = self.common.process_request(request)
        except SuspiciousOperation as exc:  # a Host not in ALLOWED_HOSTS (Django's handler: an HTML page)
            logging.getLogger(f"django.security.{type(exc).__name__}").error(str(exc))
            return JsonResponse({"detail": f"Bad request: {exc}"}, status=400)
        if response is None:
            response = self.frame_options.process_response(request, self._answer(request))
        return self.common.process_response(request, response)

    def _answer(self, request: HttpRequest) -> HttpResponse:
        try:
            response = self.track.handle(request)
        except Exception as exc:  # what RequestIdMiddleware.process_exception does for a view
            return unexpected_error(request, exc)
        response["Allow"] = self.allow  # DRF's, on every answer of its views
        return response
