"""Security headers: a Content-Security-Policy on the admin and console pages, and HSTS
on HTTPS requests when the site is served over HTTPS."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.support.processes import ROOT
from tests.support.security import assert_strict_policy

PAGES = [
    "/admin/",
    "/admin/console/queues/",
    "/admin/queueing/workersettings/",
    "/admin/queueing/workersettings/background/change/",
    "/admin/tracking/eventsource/",
    "/admin/tracking/eventsource/add/",
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_admin_and_console_pages_allow_scripts_and_styles_from_the_site_only(admin_client, path):
    assert_strict_policy(admin_client.get(path))


@pytest.mark.django_db
def test_the_login_page_has_the_policy_too(client):
    assert_strict_policy(client.get("/admin/login/"))


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_the_pages_have_no_inline_script_or_style_the_policy_would_block(admin_client, path):
    html = admin_client.get(path).content.decode()
    scripts = re.findall(r"<script\b([^>]*)>", html)
    assert all("src=" in attrs or 'type="application/json"' in attrs for attrs in scripts), scripts
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)  # onclick= and the like are inline script too


@pytest.mark.django_db
def test_hsts_goes_only_on_secure_requests(admin_client, settings):
    settings.SECURE_HSTS_SECONDS = 31_536_000  # what HTTPS=true sets
    assert admin_client.get("/admin/", secure=True)["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in admin_client.get("/admin/")


def headers_with(env: dict[str, str], request_headers: dict[str, str]) -> dict:
    """The response headers of /admin/login/ in a process started with `env`: the settings
    are read from the environment once, at start-up."""
    script = (
        "import json, django; django.setup()\n"
        "from django.test.utils import setup_test_environment; setup_test_environment()\n"
        "from django.test import Client\n"
        f"r = Client().get('/admin/login/', headers={request_headers!r})\n"
        "print(json.dumps({**r.headers, 'cookie-secure': bool(r.cookies['csrftoken']['secure'])}))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tracardi_site.settings", **env}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_behind_a_tls_proxy_https_true_sends_hsts_on_https_requests_only():
    env = {"HTTPS": "true", "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}
    secure = headers_with(env, {"X-Forwarded-Proto": "https"})
    assert secure["Strict-Transport-Security"] == "max-age=31536000"
    assert secure["cookie-secure"] is True
    assert "Strict-Transport-Security" not in headers_with(env, {"X-Forwarded-Proto": "http"})
    assert "Strict-Transport-Security" not in headers_with({}, {"X-Forwarded-Proto": "https"})
