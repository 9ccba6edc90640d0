"""deploy/entrypoint.sh, the image's entry point, run outside Docker (no Docker here) on a
temporary SQLite database: migrate (with the Helm values), api answering /track and serving
the admin's static files, a background worker and the outbox sender (qcluster) stopping on
SIGTERM sent to the main process, as Kubernetes sends it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import payload, wait_for
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("entrypoint")


@pytest.fixture(scope="module")
def env(tmp_dir: Path) -> dict[str, str]:
    tmp_path = tmp_dir
    var = tmp_path / "var"
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "QUEUE_", "STORE_", "DJANGO_"))},
        "PYTHON": sys.executable,
        "VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tracardi.sqlite3'}",
        "QUEUE_BACKEND": "database",
        "STORE_BACKEND": "database",
        "SECRET_KEY": "entrypoint-test-only",
        "LOG_SHIPPING": "false",
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=300, cwd="/")
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def migrated(env: dict[str, str], tmp_dir: Path) -> dict[str, str]:
    """One migration for the module (it takes a while on 2 cores)."""
    tmp_path = tmp_dir
    values = {"worker": {"background": {"enabled": True, "replicas": 2, "config": {"loggingLevel": "DEBUG"}}}}
    result = run({**env, "TRACARDI_HELM_VALUES": json.dumps(values)}, "migrate")
    assert "worker.background: enabled=True, replicas=2, logging_level=DEBUG" in result.stdout
    with sqlite3.connect(tmp_path / "tracardi.sqlite3") as db:
        row = db.execute(
            "SELECT enabled, replicas, logging_level FROM queueing_workersettings WHERE worker_type='background'"
        ).fetchone()
    assert row == (1, 2, "DEBUG")
    return env


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def start(started: list[subprocess.Popen], env: dict[str, str], *args: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(ENTRYPOINT), *args],
        env=env,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started.append(process)
    return process


def test_api_answers_track_and_serves_static_files(migrated: dict[str, str], started: list) -> None:
    env = migrated
    run(env, "manage", "setup_demo", "--no-collector")
    run(env, "manage", "collectstatic", "--no-input", "-v", "0")  # what the Dockerfile does at build
    port = free_port()
    api = start(started, {**env, "PORT": str(port)}, "api")
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert api.poll() is None, api.stdout.read() if api.stdout else ""
        try:
            return requests.get(f"{base}/admin/login/", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(up, timeout=60, message="the api did not answer")
    response = requests.post(f"{base}/track", json=payload("locust-test"), timeout=10)
    assert response.status_code in (200, 201), response.text
    static = requests.get(f"{base}/static/admin/css/base.css", timeout=5)
    assert static.status_code == 200 and "body" in static.text
    os.kill(api.pid, signal.SIGTERM)  # as Kubernetes does: the main process only
    assert api.wait(40) == 0


def test_background_worker_starts_and_stops_on_sigterm(migrated: dict[str, str], tmp_dir: Path, started: list) -> None:
    worker = start(started, migrated, "worker", "background")

    def beating() -> bool:
        assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
        with sqlite3.connect(tmp_dir / "tracardi.sqlite3") as db:
            return bool(
                db.execute(
                    "SELECT count(*) FROM queueing_workerheartbeat WHERE worker_type='background' AND stopped=0"
                ).fetchone()[0]
            )

    wait_for(beating, timeout=60, message="the background worker wrote no heartbeat")
    began = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)  # as Kubernetes does: the main process only
    assert worker.wait(30) == 0, worker.stdout.read() if worker.stdout else ""
    assert time.monotonic() - began < 30


def test_unknown_subcommand_is_refused(env: dict[str, str]) -> None:
    result = subprocess.run([str(ENTRYPOINT), "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "usage:" in result.stderr


def test_outbox_sender_starts_and_stops_on_sigterm(migrated: dict[str, str], started: list) -> None:
    outbox = start(started, {**migrated, "OUTBOX_WORKERS": "1"}, "outbox")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(outbox.stdout), daemon=True)  # never blocks the test
    reader.start()

    def running() -> bool:
        assert outbox.poll() is None, "".join(lines)
        return any("running" in line.lower() for line in lines)

    wait_for(running, timeout=60, message="qcluster did not report running")
    os.kill(outbox.pid, signal.SIGTERM)  # as Kubernetes does: the main process only
    assert outbox.wait(60) == 0, "".join(lines)
