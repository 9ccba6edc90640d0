"""Fixtures that run the real pipeline: gunicorn and worker processes on the test database."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from queueing.models import WorkerSettings
from tests.helpers import wait_for
from tests.support.processes import FAST_QUEUE_ENV, NO_CACHE_ENV, Process, database_url, require_engine, start_api
from tests.support.receivers import HttpReceiver
from tracking.models import EventSource
from tracking.selectors import clear_caches
from workflows.selectors import clear_caches as clear_workflow_caches

UNIT_FORBIDDEN_FIXTURES = {"db", "transactional_db", "django_db_setup", "live_server", "spawn", "live_api"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "unit: a fast test of plain functions, without database or server processes (run them: -m unit)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A unit test stays one: it may not ask for the database or the project's processes."""
    for item in items:
        if item.get_closest_marker("unit") is None:
            continue
        used = UNIT_FORBIDDEN_FIXTURES & set(getattr(item, "fixturenames", ()))
        if used or item.get_closest_marker("django_db"):
            raise pytest.UsageError(f"{item.nodeid} is marked unit but uses {sorted(used) or 'django_db'}")


@pytest.fixture
def tenant(settings) -> str:
    """A tenant of its own per test: fresh topics and indices, nothing shared with other tests."""
    settings.TENANT = f"t{uuid.uuid4().hex[:10]}"
    return settings.TENANT


@pytest.fixture
def es_store(tenant: str) -> Iterator[object]:
    """An Elasticsearch store with indices of this test's own tenant, deleted afterwards."""
    require_engine("Elasticsearch", settings.ELASTICSEARCH_URL[0], "/_cluster/health")
    from storage.backends.elasticsearch import ElasticsearchStore

    store = ElasticsearchStore()
    store.setup()
    yield store
    store.es.indices.delete(index=f"{tenant}.*", ignore_unavailable=True, allow_no_indices=True)
    store.es.indices.delete_index_template(name=f"{tenant}.*")
    store.es.close()


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    clear_caches()
    clear_workflow_caches()
    yield
    clear_caches()
    clear_workflow_caches()


@pytest.fixture(scope="session")
def process_env(django_db_setup: None) -> dict[str, str]:
    """Environment for subprocesses: the test database, the same secret, fast queue timings, no caches."""
    env = dict(os.environ)
    env.update(FAST_QUEUE_ENV)
    env.update(NO_CACHE_ENV)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tracardi_site.settings",
            "DATABASE_URL": database_url(connection.settings_dict),
            "SECRET_KEY": settings.SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def spawn(process_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Starts `manage.py <args>` processes; all are stopped when the test ends."""
    started: list[Process] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Process:
        log = tmp_path / f"{'-'.join(args)}-{len(started)}.log".replace("/", "_")
        process = Process([sys.executable, "manage.py", *args], env={**process_env, **(env or {})}, log=log)
        started.append(process)
        if args[0] == "run_worker":
            # Up and subscribed: a test that stops it later then sees a graceful stop, not a
            # SIGTERM that arrived while Python was still starting (on a loaded machine, seconds).
            wait_for(lambda: "started (pid" in process.output(), timeout=60, message=f"worker started: {log}")
        return process

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture(scope="session")
def live_api(process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_api(env=process_env, log=tmp_path_factory.mktemp("gunicorn") / "gunicorn.log")
    yield url
    process.stop()


@pytest.fixture
def make_source(db: None) -> Callable[..., EventSource]:
    def make(**fields: object) -> EventSource:
        fields.setdefault("id", f"src-{uuid.uuid4().hex[:10]}")
        fields.setdefault("name", "Test source")
        return EventSource.objects.create(**fields)

    return make


@pytest.fixture
def worker_settings(db: None) -> Callable[..., WorkerSettings]:
    """Sets worker.<type> values; small batches by default so tests see results quickly."""

    def configure(worker_type: str, **values: object) -> WorkerSettings:
        defaults = {"min_batch_size": 1, "max_batch_size": 500, "max_time_in_buffer": 0.2, **values}
        row, _ = WorkerSettings.objects.update_or_create(worker_type=worker_type, defaults=defaults)
        return row

    return configure


CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """A headless Chromium (make test installs it and chromedriver)."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed (make test installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A real HTTP server on 127.0.0.1 standing for an external system (see tests/support)."""
    server = HttpReceiver()
    server.start()
    yield server
    server.stop()
