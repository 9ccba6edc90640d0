"""Backends under contract: every Broker and Store implementation passes the same tests.

The embedded backends always run. Pulsar and Elasticsearch run when their servers
answer at PULSAR_ADMIN_URL / ELASTICSEARCH_URL (`make test` starts them when Java and
Maven are present); otherwise those tests are skipped with the reason, and with
REQUIRE_REAL_ENGINES=1 (set by .ci/run) the skip is a failure.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from django.conf import settings

from queueing.backends.database import DatabaseBroker
from queueing.broker import Broker
from storage.backends.database import DatabaseStore
from storage.store import Store
from tests.support.processes import require_engine


@pytest.fixture(params=["database", "pulsar"])
def broker_backend(request) -> str:
    if request.param == "pulsar":
        require_engine("Pulsar", settings.PULSAR_ADMIN_URL, "/admin/v2/clusters")
    return request.param


@pytest.fixture
def broker(broker_backend: str, tenant: str, transactional_db: None) -> Iterator[Broker]:
    if broker_backend == "database":
        yield DatabaseBroker()
        return
    from queueing.backends.pulsar import PulsarBroker

    broker = PulsarBroker()
    broker.setup()
    yield broker
    broker.close()
    requests.delete(f"{settings.PULSAR_ADMIN_URL}/admin/v2/tenants/{tenant}", params={"force": "true"}, timeout=30)


@pytest.fixture(params=["database", "elasticsearch"])
def store(request, tenant: str, transactional_db: None) -> Store:
    if request.param == "database":
        return DatabaseStore()
    return request.getfixturevalue("es_store")


@pytest.fixture
def backend_env(broker_backend: str, tenant: str) -> dict[str, str]:
    """Settings for worker processes: the broker under test, the same tenant."""
    return {"QUEUE_BACKEND": broker_backend, "TENANT": tenant}
