"""GET /queue/{namespace}/{topic}/backlog: the reference page's shape, staff only."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from queueing.broker import OutgoingMessage, get_broker
from queueing.topics import FUNCTIONS, partition_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("ops", password="pw", is_staff=True)


def test_backlog_has_the_reference_shape_with_exact_counts(client, staff):
    get_broker().publish([OutgoingMessage(topic=FUNCTIONS, key="a", payload={}) for _ in range(3)])
    client.force_login(staff)
    response = client.get("/queue/system/functions/backlog")
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 3
    busy = partition_for("a", 4)
    assert body["backlog"] == [
        {
            "partition": f"persistent://tracardi/system/functions-partition-{p}",
            "subscription": "tracardi-function-subscription",
            "count": 3 if p == busy else 0,
        }
        for p in range(4)
    ]


def test_an_api_token_of_a_staff_user_is_accepted(client, staff):
    token = Token.objects.create(user=staff)
    response = client.get("/queue/system/collector/backlog", headers={"Authorization": f"Token {token.key}"})
    assert response.status_code == 200
    assert response.json()["total"] == 0


def test_anonymous_callers_get_401(client):
    response = client.get("/queue/system/functions/backlog")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_non_staff_users_get_403(client):
    client.force_login(get_user_model().objects.create_user("visitor", password="pw"))
    assert client.get("/queue/system/functions/backlog").status_code == 403


@pytest.mark.parametrize("path", ["/queue/other/functions/backlog", "/queue/system/nope/backlog"])
def test_unknown_namespace_or_topic_is_404_json(client, staff, path):
    client.force_login(staff)
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["detail"].startswith("Unknown topic")


def test_dead_letter_topics_have_a_backlog_too(client, staff):
    client.force_login(staff)
    body = client.get("/queue/system/functions-DLQ/backlog").json()
    assert body["backlog"][0]["partition"] == "persistent://tracardi/system/functions-DLQ-partition-0"
