"""Source lookups are cached in-process for at most 2 seconds."""

from __future__ import annotations

import time

import pytest
import requests

from tests.helpers import payload, wait_for
from tests.support.processes import start_api
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


def test_a_disabled_source_is_rejected_by_the_live_api_within_2_seconds(process_env, make_source, tmp_path):
    # Its own API with the production cache (the shared test API caches nothing: NO_CACHE_ENV).
    api, url = start_api(env={**process_env, "SOURCE_CACHE_SECONDS": "2"}, log=tmp_path / "api.log")
    try:
        source = make_source()
        for _ in range(6):  # warm the cache of every gunicorn worker
            assert requests.post(f"{url}/track", json=payload(source.id), timeout=10).status_code == 200
        EventSource.objects.filter(id=source.id).update(enabled=False)
        disabled_at = time.monotonic()
        rounds: list[tuple[float, float]] = []  # (start, duration) of each round of 6 requests

        def rejected_by_every_worker() -> list | None:
            started = time.monotonic()
            answers = [requests.post(f"{url}/track", json=payload(source.id), timeout=10) for _ in range(6)]
            rounds.append((started, time.monotonic() - started))
            return answers if [a.status_code for a in answers] == [401] * 6 else None

        answers = wait_for(rejected_by_every_worker, timeout=10, interval=0.1, message="the source rejected")
        # The first round started after the caches expired passes: 2 s, plus at most one round and the interval.
        assert rounds[-1][0] - disabled_at <= 2.0 + max(d for _, d in rounds) + 2.0  # slack: a loaded machine
        assert answers[0].json() == {"detail": "Event source disabled."}
    finally:
        api.stop()


def test_the_known_session_cache_is_emptied_by_a_newer_profile_deletion(make_source):
    from storage.services import delete_profile
    from storage.store import get_store
    from tracking.models import SessionIdentity
    from tracking.selectors import known_profile, latest_profile_deletion

    source = make_source()
    SessionIdentity.objects.create(session_id="s-known", profile_id="p-known", source_id=source.id)
    SessionIdentity.objects.create(session_id="s-other", profile_id="p-other", source_id=source.id)
    assert known_profile("s-known") == "p-known" and known_profile("s-other") == "p-other"
    SessionIdentity.objects.filter(session_id="s-other").update(
        profile_id="changed"
    )  # not how it happens: shows the cache
    assert known_profile("s-other") == "p-other"
    delete_profile("p-known", store=get_store())
    latest_profile_deletion.cache_clear()  # as when its SOURCE_CACHE_SECONDS are over
    assert known_profile("s-known") is None  # registered anew on its next request
    assert known_profile("s-other") == "changed"  # the whole cache was emptied
