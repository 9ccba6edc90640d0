"""Bad settings stop start-up with a message naming the variable and the allowed values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.support.processes import ROOT
from tracardi_site.settings import env_fault_injection


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
        ({"WORKER_HANG_SECONDS": "5"}, "WORKER_HANG_SECONDS='5': a number from 6.0 to 3600.0 is required."),
        (
            {"WORKER_HANG_SECONDS": "20", "QUEUE_LEASE_SECONDS": "30"},
            "WORKER_HANG_SECONDS='20': more than QUEUE_LEASE_SECONDS (30), the longest a batch may take, is required.",
        ),
        (
            {"QUEUE_LEASE_SECONDS": "90"},
            "WORKER_HANG_SECONDS='60 (the default)': more than QUEUE_LEASE_SECONDS (90)",
        ),
        (
            {"FAULT_INJECT": "bogus:1"},
            "FAULT_INJECT='bogus:1': use <point>:<seconds>, the point one of after_profiles_saved, before_ack, "
            "workflow_runs_recorded, "
            "the seconds from 0 to 3600.",
        ),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(env, message):
    result = start(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_defaults_start():
    result = start()
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("", None),
        ("before_ack:60", ("before_ack", 60.0)),
        (" after_profiles_saved:0.5 ", ("after_profiles_saved", 0.5)),
    ],
)
def test_fault_injection_is_parsed_at_start_up(monkeypatch, raw, parsed):
    monkeypatch.setenv("FAULT_INJECT", raw)
    assert env_fault_injection("FAULT_INJECT") == parsed


@pytest.mark.parametrize(
    "raw", ["bogus:1", "before_ack", "before_ack:", "before_ack:soon", "before_ack:-1", "before_ack:nan"]
)
def test_a_bad_fault_injection_names_the_variable_and_the_points(monkeypatch, raw):
    monkeypatch.setenv("FAULT_INJECT", raw)
    with pytest.raises(ImproperlyConfigured) as raised:
        env_fault_injection("FAULT_INJECT")
    assert f"Bad value for environment variable FAULT_INJECT={raw!r}: use <point>:<seconds>" in str(raised.value)
    assert "after_profiles_saved, before_ack" in str(raised.value)
