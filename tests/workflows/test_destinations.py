"""Destinations: what an event or a profile change sends, and what the admin accepts."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from workflows.models import Delivery, DeliveryStatus, Destination
from workflows.outbox import destination_deliveries, enqueue_delivery

pytestmark = pytest.mark.django_db

EVENT = {
    "id": "ev-1",
    "type": "purchase",
    "source": {"id": "shop"},
    "properties": {"total": 120, "currency": "EUR"},
}
PROFILE = {"id": "p-1", "traits": {"email": "ann@example.com", "name": "Ann"}}


def destination(**fields: object) -> Destination:
    fields.setdefault("name", f"d-{Destination.objects.count()}")
    fields.setdefault("url", "http://127.0.0.1:9/hook")
    return Destination.objects.create(**fields)


def test_an_event_destination_matches_type_source_and_condition(make_source):
    shop = make_source(id="shop")
    other = make_source(id="other")
    wanted = destination(
        event_type="purchase",
        source=shop,
        condition={"path": "event@properties.total", "op": "gte", "value": 100},
        template={"email": "profile@traits.email", "total": "event@properties.total", "kind": "sale"},
    )
    destination(event_type="purchase", source=other)
    destination(event_type="page-view")
    destination(event_type="purchase", condition={"path": "event@properties.total", "op": "gt", "value": 500})
    destination(event_type="purchase", enabled=False)
    (planned,) = destination_deliveries(event=EVENT, profile_before=PROFILE, profile_after=PROFILE)
    assert planned.destination == wanted and planned.kind == "http"
    assert planned.request["body"] == {"email": "ann@example.com", "total": 120, "kind": "sale"}
    assert planned.request["headers"] == {}  # taken from the destination when sending
    again = destination_deliveries(event=EVENT, profile_before=PROFILE, profile_after=PROFILE)
    assert again[0].key == planned.key  # the same event is the same delivery


def test_a_profile_destination_sends_changes_of_its_fields_only():
    watcher = destination(trigger="profile_fields", profile_fields=["traits.email"])
    after = {**PROFILE, "traits": {**PROFILE["traits"], "email": "ann@new.example"}}
    (planned,) = destination_deliveries(event=EVENT, profile_before=PROFILE, profile_after=after)
    assert planned.destination == watcher
    assert planned.request["body"]["changes"] == {
        "traits.email": {"before": "ann@example.com", "after": "ann@new.example"}
    }
    renamed = {**PROFILE, "traits": {**PROFILE["traits"], "name": "Anna"}}
    assert destination_deliveries(event=EVENT, profile_before=PROFILE, profile_after=renamed) == []
    # A new profile: every field it has is a change.
    assert len(destination_deliveries(event=EVENT, profile_before=None, profile_after=PROFILE)) == 1
    assert destination_deliveries(event=EVENT, profile_before=PROFILE, profile_after=None) == []


def test_planned_deliveries_enqueue_once_and_paused_destinations_hold_them():
    target = destination(event_type="purchase", paused=True)
    (planned,) = destination_deliveries(event=EVENT, profile_before=None, profile_after=PROFILE)
    for _ in range(2):  # a redelivered message
        delivery = enqueue_delivery(
            kind=planned.kind, key=planned.key, request=planned.request, destination=planned.destination
        )
    assert Delivery.objects.filter(destination=target).count() == 1
    assert delivery.status == DeliveryStatus.PAUSED


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"event_type": ""}, "event_type"),
        ({"condition": {"path": "properties.total", "op": "gte", "value": 1}}, "condition"),
        ({"condition": {"path": "event@properties.total", "op": "bigger", "value": 1}}, "condition"),
        ({"template": {"email": "profile@traits..email"}}, "template"),
        ({"headers": {"X-Count": 3}}, "headers"),
        ({"trigger": "profile_fields", "profile_fields": []}, "profile_fields"),
        ({"trigger": "profile_fields", "profile_fields": ["stats"]}, "profile_fields"),
    ],
)
def test_destination_validation(fields, error_field):
    values = {"name": "x", "url": "https://example.com/hook", "event_type": "purchase", **fields}
    with pytest.raises(ValidationError) as error:
        Destination(**values).full_clean()
    assert error_field in error.value.message_dict


def test_the_admin_refuses_an_invalid_destination(admin_client):
    response = admin_client.post(
        reverse("admin:workflows_destination_add"),
        {
            "name": "crm", "enabled": "on", "url": "https://crm.example/hook", "method": "POST", "headers": "{}",
            "trigger": "event", "event_type": "purchase", "profile_fields": "[]",
            "condition": '{"path": "event@properties.total", "op": "nope", "value": 1}', "template": "",
        },
    )  # fmt: skip
    assert response.status_code == 200 and "is not one of" in response.content.decode()
    assert not Destination.objects.exists()
