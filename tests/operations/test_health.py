"""/healthz and /readyz: no auth, never cached, 503 naming the failed check."""

from __future__ import annotations

import pytest
from django.test import Client

from console import operations
from storage.store import get_store

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_answers_without_auth_and_is_not_cached(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"] and "max-age=0" in response["Cache-Control"]


def test_readyz_lists_every_check(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {"database", "broker", "store"}
    assert all(check["ok"] for check in body["checks"].values())
    assert "no-cache" in response["Cache-Control"]


def test_readyz_names_a_failed_check_and_why(client: Client, settings) -> None:
    # A store that cannot be reached: Elasticsearch on a port nobody listens on.
    settings.STORE_BACKEND = "elasticsearch"
    settings.ELASTICSEARCH_URL = ["http://127.0.0.1:9"]
    settings.ELASTICSEARCH_TIMEOUT_SECONDS = 0.5
    get_store.cache_clear()  # the process's store is built once from the settings
    try:
        response = client.get("/readyz")
    finally:
        get_store.cache_clear()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["failed"] == ["store"]
    assert body["checks"]["store"]["error"]
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]


def test_a_hung_check_fails_after_the_timeout() -> None:
    import threading

    release = threading.Event()
    results = operations.run_checks({"slow": lambda: release.wait(10), "fast": lambda: None}, timeout=0.3)
    release.set()
    assert results["slow"]["ok"] is False and "within 0.3s" in results["slow"]["error"]
    assert results["fast"]["ok"] is True
