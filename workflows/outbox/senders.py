"""One attempt of an HTTP call or an e-mail, and what its result means for retrying.

Transient (retried until the retry window ends): network errors, timeouts, HTTP 408, 429
and 5xx, SMTP connection errors and 4xx replies. Anything else is permanent: the same
request would fail the same way, so it is dead at once (HTTP 4xx, SMTP 5xx, a target the
SSRF guard refuses, a redirect: redirects are not followed, the target must be exact)."""

from __future__ import annotations

import hashlib
import smtplib
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from workflows.outbox.network import BlockedAddress, check_public_url, http_session

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# Enough of an error answer to tell what went wrong; the rest is not read.
MAX_ERROR_BODY_BYTES = 2048
TRANSIENT_HTTP = frozenset({408, 429})


@dataclass(frozen=True)
class Outcome:
    ok: bool
    transient: bool = False
    error: str = ""
    status_code: int | None = None
    retry_after: float | None = None  # seconds, from a Retry-After answer

    @classmethod
    def delivered(cls, status_code: int | None = None) -> Outcome:
        return cls(ok=True, status_code=status_code)

    @classmethod
    def retry(cls, error: str, *, status_code: int | None = None, retry_after: float | None = None) -> Outcome:
        return cls(ok=False, transient=True, error=error, status_code=status_code, retry_after=retry_after)

    @classmethod
    def dead(cls, error: str, *, status_code: int | None = None) -> Outcome:
        return cls(ok=False, transient=False, error=error, status_code=status_code)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _read_some(response: requests.Response, deadline: float) -> str:
    """The start of the body, read only until the call's total deadline."""
    data = b""
    for chunk in response.iter_content(chunk_size=512):
        data += chunk
        if len(data) >= MAX_ERROR_BODY_BYTES or time.monotonic() > deadline:
            break
    return data[:MAX_ERROR_BODY_BYTES].decode("utf-8", errors="replace")


def classify_http(status: int, *, body: str = "", retry_after: str | None = None) -> Outcome:
    if 200 <= status < 300:
        return Outcome.delivered(status)
    error = f"HTTP {status}" + (f": {body.strip()[:500]}" if body.strip() else "")
    if status in TRANSIENT_HTTP or status >= 500:
        return Outcome.retry(error, status_code=status, retry_after=parse_retry_after(retry_after))
    if 300 <= status < 400:
        return Outcome.dead(f"{error} (redirects are not followed: use the final URL)", status_code=status)
    return Outcome.dead(error, status_code=status)


def send_http(request: dict[str, Any], *, key: str) -> Outcome:
    url = request["url"]
    block = settings.OUTBOX_BLOCK_PRIVATE_ADDRESSES
    try:
        if block:
            check_public_url(url)
        # requests' read timeout bounds each wait for data; the body is read only until the
        # total deadline, and django-q2's task timeout is the last resort for anything else.
        # A remote_call node may ask for less time than OUTBOX_TIMEOUT_SECONDS, never more.
        total = min(float(request.get("timeout") or settings.OUTBOX_TIMEOUT_SECONDS), settings.OUTBOX_TIMEOUT_SECONDS)
        deadline = time.monotonic() + total
        headers = {**(request.get("headers") or {}), "Idempotency-Key": key}
        with http_session(block_private=block) as session:
            response = session.request(
                request.get("method", "POST"),
                url,
                json=request.get("body"),
                headers=headers,
                timeout=(min(settings.OUTBOX_CONNECT_TIMEOUT_SECONDS, total), total),
                allow_redirects=False,
                stream=True,
            )
            with response:
                body = "" if response.ok else _read_some(response, deadline)
                return classify_http(response.status_code, body=body, retry_after=response.headers.get("Retry-After"))
    except BlockedAddress as exc:
        return Outcome.dead(str(exc))
    except socket.gaierror as exc:
        return Outcome.retry(f"cannot resolve the host: {exc}")
    except requests.Timeout as exc:
        return Outcome.retry(f"timed out: {exc}")
    except requests.ConnectionError as exc:
        return Outcome.retry(f"connection failed: {exc}")
    except requests.RequestException as exc:
        # An invalid URL or header: the same request would fail again.
        return Outcome.dead(f"{type(exc).__name__}: {exc}")


def _smtp_outcome(code: int, message: str) -> Outcome:
    error = f"SMTP {code}: {message}"
    return Outcome.retry(error, status_code=code) if 400 <= code < 500 else Outcome.dead(error, status_code=code)


def message_id(key: str) -> str:
    """The same Message-ID for every attempt, so a receiver can drop a duplicate."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@outbox.tracardi>"


def send_email(request: dict[str, Any], *, key: str) -> Outcome:
    to = request["to"] if isinstance(request["to"], list) else [request["to"]]
    connection = get_connection(SMTP_BACKEND, fail_silently=False, timeout=settings.OUTBOX_TIMEOUT_SECONDS)
    message = EmailMessage(
        subject=request.get("subject", ""),
        body=request.get("body", ""),
        from_email=request.get("from") or settings.DEFAULT_FROM_EMAIL,
        to=to,
        headers={"Message-ID": message_id(key), "Idempotency-Key": key},
        connection=connection,
    )
    try:
        sent = message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{rcpt}: {code} {msg!r}" for rcpt, (code, msg) in exc.recipients.items())
        if codes and all(400 <= code < 500 for code in codes):
            return Outcome.retry(f"recipients refused for now: {detail}", status_code=codes[0])
        return Outcome.dead(f"recipients refused: {detail}", status_code=max(codes, default=None))
    except smtplib.SMTPResponseException as exc:
        message_text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        return _smtp_outcome(exc.smtp_code, str(message_text))
    except (smtplib.SMTPException, OSError) as exc:
        # Disconnects, refused connections, timeouts, TLS set-up: the server or the network.
        return Outcome.retry(f"{type(exc).__name__}: {exc}")
    if not sent:
        return Outcome.dead("the message was not sent (no recipients)")
    return Outcome.delivered()
