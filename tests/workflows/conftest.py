"""The outbox's real counterparts: an HTTP receiver and an SMTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.receivers import SmtpServer


@pytest.fixture
def smtp_server(settings) -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    yield server
    server.stop()


@pytest.fixture
def fast_outbox(settings) -> None:
    """Retries in tenths of seconds instead of seconds and minutes."""
    settings.OUTBOX_RETRY_BASE_SECONDS = 0.2
    settings.OUTBOX_RETRY_MAX_SECONDS = 1.0
    settings.OUTBOX_RETRY_WINDOW_SECONDS = 30.0
    settings.OUTBOX_CONNECT_TIMEOUT_SECONDS = 1.0
    settings.OUTBOX_TIMEOUT_SECONDS = 3.0
