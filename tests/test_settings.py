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
            {"QUEUE_BACKEND": "kafka"},
            "Bad value for environment variable QUEUE_BACKEND='kafka': allowed values are: database, pulsar.",
        ),
        ({"STORE_BACKEND": "solr"}, "STORE_BACKEND='solr': allowed values are: database, elasticsearch."),
        ({"PULSAR_SERVICE_URL": "http://x:6650"}, "PULSAR_SERVICE_URL='http://x:6650': a URL starting with pulsar://"),
        ({"ELASTICSEARCH_URL": "es:9200"}, "ELASTICSEARCH_URL='es:9200': a URL starting with http:// or https://"),
        ({"DATABASE_URL": "mysql://u:p@h:abc/db"}, "DATABASE_URL='mysql://u:p@h:abc/db': "),
        ({"DATABASE_URL": "sqlite://"}, "DATABASE_URL='sqlite://': "),
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
