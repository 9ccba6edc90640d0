"""The outbox against a real HTTP receiver and a real SMTP server, deliver() run in-process
(it is the django-q2 task: calling it is calling the code the cluster runs)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule

from tests.helpers import wait_for
from tests.support.receivers import Answer
from workflows.models import Delivery, DeliveryStatus, Destination
from workflows.outbox import deliver, enqueue_delivery, replay, requeue_lost
from workflows.outbox.delivery import claim
from workflows.outbox.network import BlockedAddress, blocked_reason, http_session
from workflows.outbox.scheduling import SWEEP_SCHEDULE_NAME, queue_delivery
from workflows.outbox.senders import parse_retry_after

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_outbox")]

ORIGIN = {"run_id": "run-1", "workflow_name": "checkout", "node_id": "node-7"}


def http_delivery(url: str, *, key: str | None = None, destination: Destination | None = None) -> Delivery:
    request = {"method": "POST", "url": url, "headers": {"X-Test": "yes"}, "body": {"order": 42}}
    return enqueue_delivery(
        kind="http", key=key or f"k-{uuid.uuid4().hex}", request=request, destination=destination, origin=ORIGIN
    )


def settle(delivery: Delivery, timeout: float = 20) -> Delivery:
    """Runs deliver() at each of the delivery's attempt times until it is no longer pending."""
    while True:
        delivery.refresh_from_db()
        if delivery.status != DeliveryStatus.PENDING:
            return delivery
        wait_for(
            lambda: Delivery.objects.get(pk=delivery.pk).next_attempt_at <= timezone.now(),
            timeout=timeout,
            interval=0.02,
            message="the next attempt's time",
        )
        deliver(delivery.pk)


def test_503_twice_then_200_is_delivered_on_the_third_attempt_with_one_idempotency_key(receiver):
    receiver.answer(503, 503)
    delivery = settle(http_delivery(receiver.url))
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 3
    assert delivery.last_status_code == 200 and delivery.last_error == "" and delivery.delivered_at
    assert [r.headers["Idempotency-Key"] for r in receiver.received] == [delivery.key] * 3
    first = receiver.received[0]
    assert first.method == "POST" and first.headers["X-Test"] == "yes" and first.body == b'{"order": 42}'
    # Backoff between attempts: at least half the base (equal jitter), more the second time.
    gaps = [b.at - a.at for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2


def test_the_same_key_records_one_delivery_and_queues_one_task(receiver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        first = http_delivery(receiver.url, key="run-1:node-7:abc")
    with django_capture_on_commit_callbacks(execute=True) as again:
        second = http_delivery(receiver.url, key="run-1:node-7:abc")
    assert first.pk == second.pk and Delivery.objects.count() == 1
    assert len(callbacks) == 1 and again == []
    assert OrmQ.objects.count() == 1
    assert (first.run_id, first.workflow_name, first.node_id) == ("run-1", "checkout", "node-7")


def test_a_bad_request_fails_the_caller_at_once():
    with pytest.raises(ValueError, match="not an http"):
        enqueue_delivery(kind="http", key="k", request={"url": "ftp://x/y"}, origin={})
    with pytest.raises(ValueError, match="origin"):
        enqueue_delivery(kind="http", key="k", request={"url": "http://x/y"}, origin={"run": "1"})
    with pytest.raises(ValueError, match=r"request\.to"):
        enqueue_delivery(kind="email", key="k", request={"to": [], "subject": "s", "body": "b"})


def test_400_is_not_retried_and_the_delivery_is_dead_at_once(receiver):
    receiver.answer(Answer(400, body=b"missing field email"))
    delivery = settle(http_delivery(receiver.url))
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1
    assert delivery.last_status_code == 400 and "missing field email" in delivery.last_error
    assert len(receiver.received) == 1


@pytest.mark.parametrize("status", [408, 429, 500, 502])
def test_408_429_and_5xx_are_retried(receiver, status):
    receiver.answer(status)
    delivery = settle(http_delivery(receiver.url))
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 2


def test_retry_after_is_honoured(receiver):
    receiver.answer(Answer(429, headers={"Retry-After": "1"}))
    delivery = settle(http_delivery(receiver.url))
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 2
    # The backoff alone would have waited 0.1-0.2 s.
    assert receiver.received[1].at - receiver.received[0].at >= 0.95


def test_retry_after_as_an_http_date():
    now = timezone.now()
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0
    later = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 28 <= parse_retry_after(later, now=now) <= 30
    assert parse_retry_after("120") == 120.0 and parse_retry_after("soon") is None


def test_a_receiver_down_past_the_window_is_dead_then_replayed_from_the_admin(receiver, settings, admin_client):
    settings.OUTBOX_RETRY_WINDOW_SECONDS = 2.0  # room for a second attempt on a loaded machine
    receiver.stop()  # the port is closed: connections are refused
    delivery = settle(http_delivery(receiver.url))
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts >= 2
    assert "connection failed" in delivery.last_error and "retry window" in delivery.last_error

    receiver.start()
    response = admin_client.post(
        reverse("admin:workflows_delivery_changelist"),
        {"action": "replay_selected", "_selected_action": [delivery.pk]},
        follow=True,
    )
    assert "Replayed 1 dead delivery." in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.retry_until > timezone.now()
    delivery = settle(delivery)
    assert delivery.status == DeliveryStatus.DELIVERED
    assert receiver.received[0].headers["Idempotency-Key"] == delivery.key


def test_replay_all_dead_from_the_admin_leaves_the_others_alone(receiver, admin_client):
    receiver.answer(400, 400)
    dead = [settle(http_delivery(receiver.url)) for _ in range(2)]
    delivered = settle(http_delivery(receiver.url))
    page = admin_client.get(reverse("admin:workflows_delivery_changelist")).content.decode()
    assert "Replay all dead (2)" in page
    response = admin_client.post(reverse("admin:workflows_delivery_replay_all_dead"), follow=True)
    assert "Replayed all 2 dead deliveries." in response.content.decode()
    assert {d.status for d in Delivery.objects.filter(pk__in=[d.pk for d in dead])} == {DeliveryStatus.PENDING}
    delivered.refresh_from_db()
    assert delivered.status == DeliveryStatus.DELIVERED
    assert replay([delivered]) == 0


def test_the_admin_shows_the_payload_with_credentials_masked(receiver, admin_client):
    delivery = enqueue_delivery(
        kind="http",
        key="masked",
        request={"url": receiver.url, "headers": {"Authorization": "Bearer s3cret", "X-Shop": "a"}, "body": {}},
    )
    page = admin_client.get(reverse("admin:workflows_delivery_change", args=[delivery.pk])).content.decode()
    assert "s3cret" not in page and "********" in page and "X-Shop" in page
    enqueue_delivery(kind="http", key="other", request={"url": "http://127.0.0.1:9/elsewhere", "body": {}})
    changelist = reverse("admin:workflows_delivery_changelist")
    for query in ("masked", "elsewhere"):  # by key, by URL
        assert "1 result" in admin_client.get(changelist, {"q": query}).content.decode()


def test_an_email_reaches_the_smtp_server(smtp_server):
    delivery = enqueue_delivery(
        kind="email",
        key="mail-1",
        request={"to": ["ann@example.com"], "subject": "Your order", "body": "Thanks!"},
        origin=ORIGIN,
    )
    delivery = settle(delivery)
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1
    (message,) = smtp_server.handler.messages
    assert message["Subject"] == "Your order" and message["To"] == "ann@example.com"
    assert message["Idempotency-Key"] == "mail-1" and message["Message-ID"].endswith("@outbox.tracardi>")
    assert message.get_payload().strip() == "Thanks!"


def test_smtp_4xx_is_retried_and_5xx_is_dead(smtp_server):
    smtp_server.handler.script.extend(["451 4.3.0 Try again later"])
    retried = settle(enqueue_delivery(kind="email", key="m-4xx", request={"to": "a@example.com", "body": "x"}))
    assert retried.status == DeliveryStatus.DELIVERED and retried.attempts == 2
    smtp_server.handler.script.extend(["554 5.7.1 Rejected"])
    dead = settle(enqueue_delivery(kind="email", key="m-5xx", request={"to": "a@example.com", "body": "x"}))
    assert dead.status == DeliveryStatus.FAILED and dead.attempts == 1 and dead.last_status_code == 554


def test_an_smtp_server_that_is_down_is_retried(settings):
    from tests.support.receivers import free_port

    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.OUTBOX_RETRY_WINDOW_SECONDS = 2.0  # room for a second attempt on a loaded machine
    delivery = settle(enqueue_delivery(kind="email", key="m-down", request={"to": "a@example.com", "body": "x"}))
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts >= 2
    assert "ConnectionRefusedError" in delivery.last_error


def test_a_destination_is_paused_after_n_dead_deliveries_and_resumed_from_the_admin(receiver, settings, admin_client):
    settings.OUTBOX_PAUSE_AFTER_FAILURES = 2
    destination = Destination.objects.create(name="crm", url=receiver.url, event_type="purchase")
    receiver.answer(400, 400)
    first, second, held = (http_delivery(receiver.url, destination=destination) for _ in range(3))
    settle(first)
    destination.refresh_from_db()
    assert destination.consecutive_failures == 1 and not destination.paused
    settle(second)
    destination.refresh_from_db()
    assert destination.paused and destination.paused_at and "2 deliveries in a row failed" in destination.paused_reason
    held.refresh_from_db()
    assert held.status == DeliveryStatus.PAUSED
    # A new delivery to the paused destination is stored paused; deliver() does not send it.
    later = http_delivery(receiver.url, destination=destination)
    deliver(later.pk)
    later.refresh_from_db()
    assert later.status == DeliveryStatus.PAUSED and len(receiver.received) == 2

    page = admin_client.get(reverse("admin:workflows_destination_changelist")).content.decode()
    assert "crm" in page
    response = admin_client.post(
        reverse("admin:workflows_destination_changelist"),
        {"action": "resume", "_selected_action": [destination.pk]},
        follow=True,
    )
    assert "Resumed 1 destinations; 2 paused deliveries queued." in response.content.decode()
    destination.refresh_from_db()
    assert not destination.paused and destination.consecutive_failures == 0
    assert {settle(d).status for d in (held, later)} == {DeliveryStatus.DELIVERED}
    # The dead ones stay dead until replayed.
    first.refresh_from_db()
    assert first.status == DeliveryStatus.FAILED


def test_a_success_resets_the_failure_count(receiver, settings):
    settings.OUTBOX_PAUSE_AFTER_FAILURES = 2
    destination = Destination.objects.create(name="crm", url=receiver.url, event_type="purchase")
    receiver.answer(400)
    settle(http_delivery(receiver.url, destination=destination))
    settle(http_delivery(receiver.url, destination=destination))
    destination.refresh_from_db()
    assert destination.consecutive_failures == 0 and not destination.paused


def test_a_destination_delivery_goes_to_the_destinations_current_url(receiver):
    destination = Destination.objects.create(name="crm", url="http://127.0.0.1:9/old", event_type="purchase")
    delivery = http_delivery("http://127.0.0.1:9/old", destination=destination)
    destination.url = receiver.url
    destination.headers = {"Authorization": "Bearer t"}
    destination.save()
    assert settle(delivery).status == DeliveryStatus.DELIVERED
    assert receiver.received[0].headers["Authorization"] == "Bearer t"


def test_ssrf_block_refuses_loopback_when_on(receiver, settings):
    settings.OUTBOX_BLOCK_PRIVATE_ADDRESSES = True
    delivery = settle(http_delivery(receiver.url))
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1
    assert "127.0.0.1, a loopback address" in delivery.last_error
    dead = settle(http_delivery(receiver.url.replace("127.0.0.1", "localhost")))
    assert dead.status == DeliveryStatus.FAILED and "loopback" in dead.last_error
    assert receiver.received == []


def test_the_connection_itself_is_checked_against_dns_rebinding(receiver):
    # Past the resolve check (what a rebinding name would get through), the socket's peer is checked.
    with http_session(block_private=True) as session, pytest.raises(BlockedAddress, match="loopback"):
        session.get(receiver.url, timeout=3)
    with http_session(block_private=False) as session:
        assert session.get(receiver.url, timeout=3).status_code == 200


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"), ("192.168.0.1", "private"), ("169.254.169.254", "private"), ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"), ("fe80::1", "private"), ("224.0.0.1", "multicast"),
        ("0.0.0.0", "private"), ("240.0.0.1", "private"), ("8.8.8.8", None), ("2606:4700::1111", None),
    ],
)  # fmt: skip
def test_blocked_addresses(address, reason):
    # Python's is_private covers several of these before the more specific flags.
    assert (blocked_reason(address) is None) == (reason is None)


def test_two_tasks_never_send_one_delivery(receiver):
    delivery = http_delivery(receiver.url)
    assert claim(delivery.pk) is not None
    assert claim(delivery.pk) is None  # "sending": the second task finds nothing to do
    deliver(delivery.pk)
    assert receiver.received == []


def test_a_task_for_a_later_attempt_does_nothing_early(receiver):
    delivery = http_delivery(receiver.url)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    assert deliver(delivery.pk) == "skipped"
    assert receiver.received == []


def test_a_retry_is_queued_invisible_until_its_time(receiver):
    delivery = http_delivery(receiver.url)
    at = timezone.now() + timedelta(seconds=60)
    queue_delivery(delivery.pk, at)
    (task,) = OrmQ.objects.all()
    assert abs((task.lock - at).total_seconds()) < 0.01
    assert ORM(list_key=Conf.CLUSTER_NAME).dequeue() is None  # the broker does not hand it out yet
    queue_delivery(delivery.pk)
    assert len(ORM(list_key=Conf.CLUSTER_NAME).dequeue()) == 1


def test_the_sweep_requeues_lost_and_interrupted_deliveries(receiver, settings):
    lost, interrupted, waiting = (http_delivery(receiver.url) for _ in range(3))
    long_ago = timezone.now() - timedelta(hours=1)
    Delivery.objects.filter(pk=lost.pk).update(next_attempt_at=long_ago)
    Delivery.objects.filter(pk=interrupted.pk).update(status=DeliveryStatus.SENDING, attempts=1, updated_at=long_ago)
    Delivery.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=1))
    assert requeue_lost() == 2
    assert OrmQ.objects.count() == 2
    interrupted.refresh_from_db()
    assert interrupted.status == DeliveryStatus.PENDING and "cut off" in interrupted.last_error
    assert settle(interrupted).status == DeliveryStatus.DELIVERED
    assert requeue_lost() == 0  # queued once a minute at most


def test_the_sweep_schedule_exists_after_migrate():
    schedule = Schedule.objects.get(name=SWEEP_SCHEDULE_NAME)
    assert schedule.func == "workflows.outbox.scheduling.requeue_lost"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)


def test_a_slow_receiver_times_out_and_is_retried(receiver, settings):
    settings.OUTBOX_TIMEOUT_SECONDS = 0.3
    settings.OUTBOX_RETRY_WINDOW_SECONDS = 0.5
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections, never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        delivery = settle(http_delivery(url))
    finally:
        listener.close()
    assert delivery.status == DeliveryStatus.FAILED and "timed out" in delivery.last_error
