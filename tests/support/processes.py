"""Processes of the project for the tests that need them (gunicorn, workers), free ports,
and the real engines' availability. Imported by tests/conftest.py's fixtures and by tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.db import connection

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent

# Short leases and redelivery delays, so crash and dead-letter tests take seconds.
FAST_QUEUE_ENV = {
    "QUEUE_LEASE_SECONDS": "2",
    "QUEUE_NACK_DELAY_SECONDS": "0.2",
    "MAX_REDELIVERIES": "3",
}
# No caching of sources, rules, worker settings, triggers and workflows (tracking/selectors.py,
# workflows/selectors.py): a change a test makes reaches the API and the workers' next read,
# instead of waiting out the cache. A test of the cache itself starts its own API with a TTL.
NO_CACHE_ENV = {"SOURCE_CACHE_SECONDS": "0"}


def database_url(settings_dict: dict) -> str:
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    return f"mysql://{user}:{password}@{settings_dict['HOST']}:{settings_dict['PORT']}/{settings_dict['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_engine(name: str, url: str, probe: str) -> None:
    """Skips (or fails, under REQUIRE_REAL_ENGINES=1) when the engine does not answer. One
    that is listening but slow or erroring (a JVM pausing on a loaded machine) gets 30 s."""
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}{probe}", timeout=3).raise_for_status()
            return
        except requests.ConnectionError as exc:  # nothing listens
            failure: Exception = exc
            break
        except requests.RequestException as exc:
            failure = exc
            if time.monotonic() > deadline:
                break
        time.sleep(1)
    reason = (
        f"{name} is not reachable at {url} ({type(failure).__name__}); `make test` starts it when Java and Maven exist"
    )
    if os.environ.get("REQUIRE_REAL_ENGINES") == "1":
        pytest.fail(f"REQUIRE_REAL_ENGINES=1 but {reason}")
    pytest.skip(reason)


class Process:
    """A subprocess of the project, with its output in a file the test can read."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._file, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._file.close()
        return self.popen.returncode

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()


def start_api(*, env: dict[str, str], log: Path) -> tuple[Process, str]:
    """gunicorn serving the project, as `make run` does; returns once it answers."""
    port = free_port()
    process = Process(
        [sys.executable, "-m", "gunicorn", "tracardi_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        env=env,
        log=log,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.options(f"{url}/track", timeout=1).status_code == 200
        except requests.RequestException:  # not listening yet, or still starting
            return False

    wait_for(up, timeout=30, message=f"gunicorn on {url}; log: {log}")
    return process, url
