"""The log shipping handler in this process, against the real log table: batching, a full
buffer, a failing store, the prune schedule."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from console.logs.handler import ShippingHandler
from console.logs.services import PRUNE_SCHEDULE_NAME, ensure_prune_schedule, prune_logs
from console.models import LogDrops, LogLine
from tests.helpers import wait_for
from tests.support.processes import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

REFERENCE_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}: INFO: Events: Saved 2, Errors=0: "
    r"\(tests\.shipping\.\w+:test_log_shipping\.py:\d+\)$"
)


def make_handler(**options: object) -> ShippingHandler:
    handler = ShippingHandler(**options)
    handler.setFormatter(logging.Formatter(settings.LOGGING["formatters"]["tracardi"]["format"]))
    return handler


@pytest.fixture
def ship() -> Iterator[callable]:
    """A logger of its own per test, logging to the given handler; both closed afterwards."""
    made: list[tuple[logging.Logger, ShippingHandler]] = []

    def attach(handler: ShippingHandler) -> logging.Logger:
        log = logging.getLogger(f"tests.shipping.t{uuid.uuid4().hex[:8]}")
        log.propagate = False
        log.setLevel(logging.DEBUG)
        log.addHandler(handler)
        made.append((log, handler))
        return log

    yield attach
    for log, handler in made:
        log.removeHandler(handler)
        handler.close()


DROPPED_WARNING = re.compile(r"WARNING: Log shipping dropped [123] record\(s\)")


@pytest.fixture
def log_table_dropped() -> Iterator[None]:
    """The log store unavailable: its table is gone (put back afterwards)."""
    with connection.schema_editor() as editor:
        editor.delete_model(LogLine)
    yield
    with connection.schema_editor() as editor:
        editor.create_model(LogLine)


def test_records_are_written_in_batches_in_the_reference_format(ship):
    handler = make_handler(flush_records=200)
    log = ship(handler)
    handler.start("background", run_thread=False)  # buffer first, so the batches are predictable
    for _ in range(450):
        log.info("Events: Saved %d, Errors=%d", 2, 0)
    handler.start_thread()
    # The writer counts a batch after its commit: wait for its count, not the table's.
    wait_for(lambda: handler.written == 450, timeout=15, message="450 lines stored")
    assert LogLine.objects.count() == 450
    assert handler.batches == 3 and handler.dropped == 0  # 200 + 200 + 50
    line = LogLine.objects.first()
    assert REFERENCE_LINE.match(line.message), line.message
    assert (line.worker_type, line.pid, line.host) == ("background", os.getpid(), socket.gethostname())
    assert line.level == logging.INFO and line.logger == log.name


def test_a_lone_record_is_written_within_the_flush_interval(ship):
    handler = make_handler()
    log = ship(handler)
    handler.start("collector")
    log.warning("only one")
    wait_for(lambda: LogLine.objects.filter(message__contains="WARNING: only one").exists(), timeout=5)


def test_nothing_is_shipped_before_the_process_says_what_it_is(ship):
    handler = make_handler()
    log = ship(handler)
    log.error("from manage.py migrate or a shell")
    assert handler.queue.empty()
    handler.start("background", level=logging.WARNING)
    log.info("below the handler's level")
    log.warning("shipped")
    wait_for(lambda: handler.written == 1, timeout=5)
    assert list(LogLine.objects.values_list("level", flat=True)) == [logging.WARNING]


def test_a_full_buffer_drops_and_counts_without_blocking_the_caller(ship):
    handler = make_handler(capacity=5)
    log = ship(handler)
    handler.start("background", run_thread=False)  # nobody empties the buffer
    for i in range(1005):
        log.info("line %d", i)  # returns at once: a test that hung here would fail
    assert handler.dropped == 1000 and handler.queue.qsize() == 5
    handler.start_thread()
    wait_for(lambda: LogLine.objects.count() == 5, timeout=5)
    # The drops are saved for the log page.
    wait_for(lambda: LogDrops.objects.filter(pid=os.getpid(), dropped=1000).exists(), timeout=5)
    assert LogDrops.objects.get(pid=os.getpid()).worker_type == "background"


def test_a_failing_store_never_raises_into_the_caller_and_recovers(ship, log_table_dropped, capfd):
    handler = make_handler(flush_seconds=0.2)
    log = ship(handler)
    handler.start("workflow")
    for i in range(3):
        log.info("lost %d", i)  # no exception, although every write fails
    wait_for(lambda: handler.dropped == 3, timeout=10, message="3 records dropped")
    assert "console_logline" in handler.last_error
    assert handler._thread.is_alive()
    # Told on stderr, once for the interval, in the reference format.
    # (All 3 when they fell in one batch; a stalled machine may have split them.)
    wait_for(lambda: DROPPED_WARNING.search(capfd.readouterr().err), timeout=5)
    log.info("still lost")
    wait_for(lambda: handler.dropped == 4, timeout=10)
    assert "Log shipping dropped" not in capfd.readouterr().err  # not again within the interval

    with connection.schema_editor() as editor:  # the store is back
        editor.create_model(LogLine)
    try:
        log.info("shipped again")
        wait_for(lambda: LogLine.objects.filter(message__contains="shipped again").exists(), timeout=10)
        wait_for(lambda: LogDrops.objects.filter(pid=os.getpid(), dropped=4).exists(), timeout=5)
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(LogLine)  # the fixture puts it back


def test_the_writer_thread_does_not_ship_its_own_records(ship, settings):
    """With DEBUG on, Django logs the writer's SQL: shipping that would write forever."""
    settings.DEBUG = True
    sql_log = logging.getLogger("django.db.backends")
    handler = make_handler(flush_seconds=0.2)
    log = ship(handler)
    handler.start("background")
    sql_log.addHandler(handler)
    sql_log.setLevel(logging.DEBUG)
    try:
        log.warning("one")
        wait_for(lambda: handler.written == 1, timeout=5)
        log.warning("two")  # a flush later: a loop would have written the SQL of the first by now
        wait_for(lambda: handler.written >= 2, timeout=5)
        assert handler.written == 2
        assert list(LogLine.objects.values_list("logger", flat=True)) == [log.name, log.name]
    finally:
        sql_log.removeHandler(handler)
        sql_log.setLevel(logging.NOTSET)


def test_pruning_keeps_the_newest_lines_within_the_retention(settings):
    settings.LOG_MAX_RECORDS = 3
    settings.LOG_RETENTION_DAYS = 2
    now = timezone.now()

    def line(age: timedelta) -> LogLine:
        return LogLine(time=now - age, level=20, logger="t", message="m", worker_type="api", host="h", pid=1)

    LogLine.objects.bulk_create([line(timedelta(days=3)), *(line(timedelta(minutes=i)) for i in range(5, 0, -1))])
    assert prune_logs() == 3
    assert [m.minute for m in LogLine.objects.order_by("id").values_list("time", flat=True)] == [
        (now - timedelta(minutes=i)).minute for i in (3, 2, 1)
    ]


def test_the_prune_schedule_is_created_once():
    ensure_prune_schedule()
    ensure_prune_schedule()
    schedule = Schedule.objects.get(name=PRUNE_SCHEDULE_NAME)
    assert schedule.func == "console.logs.services.prune_logs" and schedule.repeats == -1


SIGNAL_SCRIPT = """
import logging, signal
from console.logs.handler import ShippingHandler
handler = ShippingHandler(capacity=500)
handler.start("background", run_thread=False)
log = logging.getLogger("signals")
log.propagate = False
log.addHandler(handler)
log.setLevel(logging.INFO)
signal.signal(signal.SIGALRM, lambda *_: log.info("Received SIGTERM; finishing the current batch"))
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
for i in range(100_000):
    log.info("line %d", i)
signal.setitimer(signal.ITIMER_REAL, 0)
print("done", handler.dropped > 0)
"""


def test_logging_from_a_signal_handler_that_interrupts_logging_does_not_deadlock():
    """Workers log from their SIGTERM handler; a handler lock that is not reentrant would
    hang the process when the signal lands inside a log call (a subprocess: a hang here is a
    timeout, not a stuck test run)."""
    result = subprocess.run([sys.executable, "-c", SIGNAL_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "done True", result.stderr
