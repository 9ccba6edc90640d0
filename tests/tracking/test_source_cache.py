"""Source lookups are cached in-process for at most 2 seconds."""

from __future__ import annotations

import pytest
import requests

from tests.helpers import let_api_caches_expire, payload
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
    for _ in range(6):  # warm the cache of every gunicorn worker
        assert requests.post(url, json=payload(source.id), timeout=10).status_code == 200
    EventSource.objects.filter(id=source.id).update(enabled=False)
    let_api_caches_expire()
    answers = [requests.post(url, json=payload(source.id), timeout=10) for _ in range(6)]
    assert [a.status_code for a in answers] == [401] * 6
    assert answers[0].json() == {"detail": "Event source disabled."}
