"""Source lookups are cached in-process for at most 2 seconds."""

from __future__ import annotations

import time

import pytest
import requests

from tests.helpers import payload, wait_for
from tracking.models import EventSource
from tracking.selectors import get_source

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_cached_lookup_makes_no_query(make_source, django_assert_num_queries):
    source = make_source()
    with django_assert_num_queries(1):
        get_source(source_id=source.id)
        get_source(source_id=source.id)
    with django_assert_num_queries(1):
        get_source(source_id="unknown")
        get_source(source_id="unknown")


def test_a_disabled_source_is_rejected_by_the_live_api_within_2_seconds(live_api, make_source):
    source = make_source()
    url = f"{live_api}/track"
    assert requests.post(url, json=payload(source.id), timeout=10).status_code == 200
    EventSource.objects.filter(id=source.id).update(enabled=False)
    disabled_at = time.monotonic()
    wait_for(
        lambda: requests.post(url, json=payload(source.id), timeout=10).status_code == 401,
        timeout=2.5,
        interval=0.05,
        message="401 after disabling",
    )
    assert time.monotonic() - disabled_at <= 2.5
    response = requests.post(url, json=payload(source.id), timeout=10)
    assert response.json() == {"detail": "Event source disabled."}
