"""`manage.py send_events`, the README's demo traffic, against the live API and against a
port nothing listens on."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from tests.support.processes import free_port
from tracking.loadgen import send_events

pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_traffic_is_accepted_and_reported(live_api, make_source, worker_settings):
    worker_settings("collector", enabled=True)  # queue mode queues (201)
    source = make_source()
    out = io.StringIO()
    call_command(
        "send_events", url=live_api, source=source.id, count=25, events_per_request=10, mode="queue",
        concurrency=2, sessions=3, no_progress=True, stdout=out,
    )  # fmt: skip
    assert out.getvalue().startswith("Sent 25 events in 3 requests in ")
    assert "(statuses 201: 3)" in out.getvalue()


def test_a_server_that_is_not_there_counts_every_request_failed(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    result = send_events(
        url=url, source_id="x", count=30, events_per_request=10, queue=False, concurrency=2, sessions=1
    )
    assert (result.requests, result.failed, result.events) == (3, 3, 0)
    assert result.first_error.startswith("connection error: ")
    assert "3 requests failed" in capsys.readouterr().err  # beside the bar of events sent
    with pytest.raises(CommandError, match="Some requests failed; first error: connection error"):
        call_command("send_events", url=url, count=10, no_progress=True, stdout=io.StringIO())
