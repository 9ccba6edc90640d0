"""Bad settings stop start-up with a message naming the variable and the allowed values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def start(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tracardi_site.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"QUEUE_BACKEND": "pulsar"},
            "Bad value for environment variable QUEUE_BACKEND='pulsar': the pulsar broker is not available in this "
            "version yet; allowed values are: database.",
        ),
        (
            {"STORE_BACKEND": "elasticsearch"},
            "STORE_BACKEND='elasticsearch': the elasticsearch store is not available in this version yet",
        ),
        ({"QUEUE_BACKEND": "kafka"}, "QUEUE_BACKEND='kafka': allowed values are: database."),
        ({"QUEUE_PARTITIONS": "four"}, "QUEUE_PARTITIONS='four': an integer from 1 to 256 is required."),
        ({"TRACK_MAX_EVENTS": "0"}, "TRACK_MAX_EVENTS='0': an integer from 1 to 100000 is required."),
        ({"DEBUG": "maybe"}, "DEBUG='maybe': allowed values are 1/true/yes/on or 0/false/no/off."),
        ({"DATABASE_URL": "postgres://x/y"}, "DATABASE_URL='postgres://x/y': use sqlite:///"),
        ({"TENANT": "Bad Tenant"}, "TENANT='Bad Tenant': use 1-63 lower-case letters"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(env, message):
    result = start(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_defaults_start():
    result = start()
    assert result.returncode == 0, result.stderr
