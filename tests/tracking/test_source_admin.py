"""Event sources in the admin: create, validate, filter, search, bulk enable/disable."""

from __future__ import annotations

import pytest

from tracking.models import EventSource

pytestmark = pytest.mark.django_db(transaction=True)


def form(**fields) -> dict:
    return {
        "id": "web-shop",
        "name": "Web shop",
        "description": "",
        "bridge": "rest",
        "enabled": "on",
        "bot_filter": "off",
        "allowed_origins": "https://shop.example.com\nhttps://www.example.com:8443",
        **fields,
    }


def test_a_source_is_created_through_the_admin_form(admin_client):
    response = admin_client.post("/admin/tracking/eventsource/add/", form(transitional="on"))
    assert response.status_code == 302
    source = EventSource.objects.get(id="web-shop")
    assert source.enabled and source.transitional and not source.static_profile_id
    assert source.created_at and source.updated_at


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"id": "has spaces"}, "Use letters, digits, &#x27;.&#x27;, &#x27;_&#x27; or &#x27;-&#x27;"),
        ({"allowed_origins": "shop.example.com"}, "Not an origin: shop.example.com."),
        ({"name": ""}, "This field is required."),
        ({"bridge": "kafka"}, "Select a valid choice."),
    ],
)
def test_invalid_input_is_rejected_with_a_form_error(admin_client, fields, error):
    response = admin_client.post("/admin/tracking/eventsource/add/", form(**fields))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not EventSource.objects.exists()


def test_list_filters_and_search(admin_client):
    EventSource.objects.create(id="alpha", name="Alpha web", enabled=True)
    EventSource.objects.create(id="beta", name="Beta app", enabled=False)
    page = admin_client.get("/admin/tracking/eventsource/?enabled__exact=0").content.decode()
    assert "beta" in page and "alpha" not in page
    page = admin_client.get("/admin/tracking/eventsource/?q=web").content.decode()
    assert "alpha" in page and "beta" not in page


def test_bulk_disable_and_enable_actions(admin_client):
    EventSource.objects.create(id="a", name="A")
    EventSource.objects.create(id="b", name="B")
    url = "/admin/tracking/eventsource/"
    response = admin_client.post(url, {"action": "disable_sources", "_selected_action": ["a", "b"]}, follow=True)
    assert "Disabled 2 event source(s)" in response.content.decode()
    assert not EventSource.objects.filter(enabled=True).exists()
    admin_client.post(url, {"action": "enable_sources", "_selected_action": ["a"]})
    assert list(EventSource.objects.filter(enabled=True).values_list("id", flat=True)) == ["a"]
