"""POST /track: verify the source, validate, process or queue, answer after the broker confirmed."""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views import defaults
from django.views.decorators.http import require_safe
from rest_framework import status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from queueing.broker import BrokerUnavailable, get_broker
from tracking import selectors, services, telemetry
from tracking.accept import TrackError, accept, invalid
from tracking.encoding import BodyDecodingError, decode_body
from tracking.models import BotFilter, BridgeType
from tracking.schema import track_schema, webhook_schema
from tracking.validation import PayloadInvalid, check_structure, json_type, validate_track_payload
from tracking.visits import parse_user_agent

logger = logging.getLogger(__name__)

ACCEPTED_ENCODINGS = "gzip, deflate"
CORS_ALLOW_HEADERS = "Content-Type, Authorization, X-Requested-With"


def read_body(request: HttpRequest) -> bytes:
    limit = settings.TRACK_MAX_BODY_BYTES
    too_large = TrackError(
        status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        f"Request body is larger than TRACK_MAX_BODY_BYTES ({limit} bytes).",
    )
    meta = request.META
    if not meta.get("CONTENT_LENGTH") and "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        body = _read_chunked(meta, limit)
    else:
        try:
            declared = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise too_large
        body = request.read(limit + 1)
    if len(body) > limit:
        raise too_large
    return body


def _read_chunked(meta: dict[str, Any], limit: int) -> bytes:
    """A chunked body (no Content-Length): Django reads only Content-Length bytes, so it would
    be empty. The server's decoded input is read to its end, when the server says that end
    is marked (`wsgi.input_terminated`, gunicorn's); at most limit + 1 bytes."""
    if not meta.get("wsgi.input_terminated"):
        raise TrackError(
            status.HTTP_411_LENGTH_REQUIRED, "Send the body with a Content-Length: this server cannot read it chunked."
        )
    stream, parts, size = meta["wsgi.input"], [], 0
    while size <= limit:
        part = stream.read(limit + 1 - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def decoded_body(request: HttpRequest) -> bytes:
    """The body, decompressed per Content-Encoding; TRACK_MAX_BODY_BYTES bounds it both as sent
    and once decompressed."""
    try:
        return decode_body(
            read_body(request), request.headers.get("Content-Encoding"), limit=settings.TRACK_MAX_BODY_BYTES
        )
    except BodyDecodingError as exc:
        raise TrackError(exc.status, str(exc)) from None


def parse_json(body: bytes) -> Any:
    """Any JSON value, within TRACK_MAX_DEPTH and the key limits every store can keep."""
    max_depth = settings.TRACK_MAX_DEPTH
    too_deep_error = f"Nested deeper than TRACK_MAX_DEPTH ({max_depth} levels)."
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc):  # deeper than the parser's own limit
            raise invalid([{"path": "$", "message": too_deep_error}]) from None
        raise TrackError(status.HTTP_400_BAD_REQUEST, f"Malformed JSON: {_not_utf8(body) or exc}.") from None
    problem = check_structure(data, max_depth=max_depth)
    if problem is not None:
        raise invalid([problem])
    return data


def _not_utf8(body: bytes) -> str | None:
    """Where the body stops being UTF-8, if it does: orjson says "surrogates not allowed" for
    any invalid byte, which misleads a client that sent, say, Latin-1."""
    try:
        body.decode()
    except UnicodeDecodeError as exc:
        return f"the body is not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})"
    return None


def parse_payload(body: bytes) -> dict[str, Any]:
    data = parse_json(body)
    if not isinstance(data, dict):
        raise invalid([{"path": "$", "message": f"Expected an object but got {json_type(data)}."}])
    events = data.get("events")
    if isinstance(events, list) and len(events) > settings.TRACK_MAX_EVENTS:
        raise TrackError(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"Too many events: {len(events)}; TRACK_MAX_EVENTS allows {settings.TRACK_MAX_EVENTS} per request.",
        )
    return data


def webhook_payload(body: Any, *, event_type: str, source_id: str, query: Mapping[str, str]) -> dict[str, Any]:
    """The /track payload of one webhook call: the body becomes the event's properties; a
    body that is not an object (a list, a string, a number) is wrapped as {"value": body},
    since properties are an object."""
    properties = body if isinstance(body, dict) else {"value": body}
    payload: dict[str, Any] = {
        "source": {"id": source_id},
        "events": [{"type": event_type, "properties": properties}],
        "context": {},
        "options": {},
    }
    for field in ("session", "profile"):
        value = query.get(f"{field}_id")
        if value:
            payload[field] = {"id": value}
    return payload


def verify_source(data: dict[str, Any]) -> selectors.SourceSnapshot | None:
    """Rejects unknown and disabled sources; None when source.id is missing (validation reports it)."""
    source_id = (data.get("source") or {}).get("id") if isinstance(data.get("source"), dict) else None
    if not isinstance(source_id, str) or not source_id.strip():
        return None
    source = selectors.get_source(source_id=source_id)
    if source is None:
        raise TrackError(status.HTTP_401_UNAUTHORIZED, "Invalid event source.")
    if not source.enabled:
        raise TrackError(status.HTTP_401_UNAUTHORIZED, "Event source disabled.")
    return source


def check_bridge(source: selectors.SourceSnapshot | None, bridge: str) -> None:
    """A source takes events through its own bridge only: a webhook URL handed to a third
    party must not become a way to send arbitrary /track payloads, nor the other way round."""
    if source is None or source.bridge == bridge:
        return
    if source.bridge == BridgeType.WEBHOOK:
        raise TrackError(
            status.HTTP_403_FORBIDDEN,
            f"Event source {source.id} is a webhook bridge: post to /collect/{{event_type}}/{source.id}.",
        )
    raise TrackError(
        status.HTTP_403_FORBIDDEN,
        f"Event source {source.id} is not a webhook bridge: send its events to /track, or set its bridge to Webhook.",
    )


def check_origin(request: HttpRequest, source: selectors.SourceSnapshot | None) -> None:
    """A source that lists its origins accepts browsers from those only (CORS alone would
    not stop a simple `text/plain` POST from another site), and requests without an
    Origin (servers, apps) as its setting says."""
    if source is None or "*" in source.allowed_origins:
        return
    origin = request.headers.get("Origin")
    if origin is None:
        if not source.accept_without_origin:
            raise TrackError(status.HTTP_403_FORBIDDEN, "This event source accepts only browsers of its origins.")
    elif not source.allows_origin(origin):
        raise TrackError(status.HTTP_403_FORBIDDEN, f"Origin {origin} is not allowed by this event source.")


def reject_bots(request: HttpRequest, source: selectors.SourceSnapshot | None) -> None:
    if source and source.bot_filter == BotFilter.REJECT and parse_user_agent(request.headers.get("User-Agent"))["bot"]:
        raise TrackError(status.HTTP_401_UNAUTHORIZED, "Bot traffic is not accepted by this event source.")


def json_response(body: dict[str, Any], status_code: int) -> HttpResponse:
    """The answer of /track, serialized by orjson: DRF's Response renders with the standard
    json module, several times slower for this body (bench/api_ratio.py)."""
    return HttpResponse(orjson.dumps(body), status=status_code, content_type="application/json")


class JsonOnly(BaseContentNegotiation):
    """/track answers JSON whatever the Accept header says, as Tracardi's does: nothing to
    negotiate per request."""

    def select_parser(self, request: Request, parsers: list) -> None:
        return None

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        return renderers[0], renderers[0].media_type


def request_meta(request: HttpRequest) -> services.RequestMeta:
    return services.RequestMeta(
        ip=request.META.get("REMOTE_ADDR"),
        headers=services.request_headers(request.META),
        received_at=timezone.now().isoformat(),
    )


class TrackView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []  # the body is read and parsed here, with its own limits
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnly
    bridge: str = BridgeType.REST

    @track_schema()
    def post(self, request: Request) -> HttpResponse:
        """Reached only where TrackFastPathMiddleware is not installed: it answers POST /track
        itself, with the same `handle`."""
        return self.handle(request._request)

    def handle(self, request: HttpRequest) -> HttpResponse:
        return self.respond(request, lambda: parse_payload(decoded_body(request)))

    def respond(self, request: HttpRequest, read_payload: Callable[[], dict[str, Any]]) -> HttpResponse:
        """The one path of every bridge: read, verify the source, validate, accept; the errors
        and the 503 are answered the same whichever way the payload came. Django's request,
        not DRF's: nothing here needs DRF's, and the fast path has none."""
        started = time.perf_counter()
        status_code, source_id = 500, None  # an unexpected exception: the middleware answers 500
        try:
            response, source = self.process(request, read_payload)
            status_code, source_id = response.status_code, source and source.id
            return self.with_cors(request, response, source)
        finally:
            telemetry.record_track(status_code, source_id, time.perf_counter() - started)

    def process(
        self, request: HttpRequest, read_payload: Callable[[], dict[str, Any]]
    ) -> tuple[HttpResponse, selectors.SourceSnapshot | None]:
        source = None
        try:
            data = read_payload()
            source = verify_source(data)
            check_bridge(source, self.bridge)
            check_origin(request, source)
            reject_bots(request, source)
            try:  # the payload's paths from here on: named as the client sent them
                try:
                    valid = validate_track_payload(data)
                except PayloadInvalid as exc:
                    raise invalid(exc.errors) from None
                outcome = accept(broker=get_broker(), source=source, payload=valid, meta=request_meta(request))
            except TrackError as refused:
                raise refused.with_paths(self.client_path) from None
            response = json_response(outcome.body, outcome.status_code)
        except TrackError as exc:
            response = json_response(exc.body(), exc.status_code)
            if exc.status_code == status.HTTP_415_UNSUPPORTED_MEDIA_TYPE:
                response["Accept-Encoding"] = ACCEPTED_ENCODINGS
        except (BrokerUnavailable, DatabaseError):
            logger.exception("Could not accept a /track payload")
            response = json_response(
                {"detail": "The event queue is unavailable; nothing was accepted. Retry later."},
                status.HTTP_503_SERVICE_UNAVAILABLE,
            )
            response["Retry-After"] = str(settings.TRACK_RETRY_AFTER_SECONDS)
        return response, source

    @staticmethod
    def client_path(path: str) -> str:
        """An error's path as the client wrote it: /track's payload is the client's own."""
        return path

    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """CORS preflight: it carries no body, so any enabled source allowing the origin admits it."""
        response = Response(status=status.HTTP_200_OK)
        origin = request.headers.get("Origin")
        if origin and selectors.any_source_allows_origin(origin=origin):
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", CORS_ALLOW_HEADERS
            )
            response["Access-Control-Allow-Credentials"] = "true"
            response["Access-Control-Max-Age"] = "600"
            response["Vary"] = "Origin"
        return response

    @staticmethod
    def with_cors(
        request: HttpRequest, response: HttpResponse, source: selectors.SourceSnapshot | None
    ) -> HttpResponse:
        origin = request.headers.get("Origin")
        if origin and source is not None and source.allows_origin(origin):
            # The origin itself, never "*": a browser sends credentials (sendBeacon always
            # does, fetch with credentials: "include") only to an origin named with them allowed.
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Credentials"] = "true"
            response["Vary"] = "Origin"
        return response


WEBHOOK_PATHS = (
    ("$.events[0].properties", "$"),
    ("$.events[0].type", "{event_type} of the URL"),
    ("$.session.id", "?session_id"),
    ("$.profile.id", "?profile_id"),
)


class WebhookView(TrackView):
    """POST /collect/{event_type}/{source_id}: any JSON body becomes one event, for systems
    that can only call a webhook. Optional ?session_id=&profile_id= tie it to a visitor."""

    bridge = BridgeType.WEBHOOK

    @staticmethod
    def client_path(path: str) -> str:
        """The payload's paths as parts of the call: `$` is the body, which became the event's
        properties; the event type is the URL's; session and profile ids are query parameters."""
        for built, sent in WEBHOOK_PATHS:
            if path == built or path.startswith((built + ".", built + "[")):
                return sent + path[len(built) :]
        return path

    @webhook_schema()
    def post(self, request: Request, event_type: str, source_id: str) -> HttpResponse:  # type: ignore[override]
        plain = request._request
        return self.respond(
            plain,
            lambda: webhook_payload(
                parse_json(decoded_body(plain)), event_type=event_type, source_id=source_id, query=plain.GET
            ),
        )


TRACKER_FILE = Path(__file__).resolve().parent / "static" / "tracking" / "tracker.js"
# A day: sites load the script under this fixed URL, so a new version must reach them
# without a rename; the ETag makes the daily revalidation a 304.
TRACKER_CACHE_SECONDS = 86_400


@functools.cache
def tracker_file() -> tuple[bytes, str]:
    body = TRACKER_FILE.read_bytes()
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


@require_safe
def tracker_script(request: HttpRequest) -> HttpResponse:
    """GET /tracker.js: the browser tracker, a script other sites load with <script src>."""
    body, etag = tracker_file()
    if etag in request.headers.get("If-None-Match", ""):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["ETag"] = etag
    response["Cache-Control"] = f"public, max-age={TRACKER_CACHE_SECONDS}"
    # Other origins embed it: let them, also with <script crossorigin> (for error details).
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    response["Access-Control-Allow-Origin"] = "*"
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404: JSON for the API (a JSON client must not get an HTML page), Django's page in the admin."""
    if request.path.startswith("/admin/"):
        return defaults.page_not_found(request, exception)
    return JsonResponse({"detail": f"Not found: {request.method} {request.path}"}, status=404)
