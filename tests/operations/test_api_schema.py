"""The OpenAPI schema: valid, served with its documentation pages under the CSP, and true to
the live /track: schemathesis sends 1,000+ generated requests and checks every answer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import requests
import schemathesis
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = 1000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def test_schema_validates() -> None:
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_schema_covers_every_http_api(client: Client) -> None:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths) >= {
        "/track",
        "/queue/{namespace}/{topic}/backlog",
        "/api/profiles/{profile_id}",
        "/healthz",
        "/readyz",
    }
    track = paths["/track"]["post"]
    assert set(track["responses"]) >= {"200", "201", "400", "401", "413", "422", "503"}


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_have_no_inline_script_and_a_csp(client: Client, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src" not in policy  # scripts: this site's files only
    html = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    assert "<style" not in html and "//fonts.googleapis" not in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources
    static = "/" + django_settings.STATIC_URL.lstrip("/")
    for src in sources:
        src = src.replace("&amp;", "&")
        if src.startswith(static):  # served from STATIC_ROOT after collectstatic
            assert finders.find(src.removeprefix(static)), src
        else:  # the Swagger UI init script, from the view itself
            script = client.get(src)
            assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode(), src


def generated_cases(url: str) -> st.SearchStrategy:
    """POST /track cases from the live schema: valid ones (3 in 4) and schema-violating ones."""
    operation = schemathesis.openapi.from_url(f"{url}/api/schema/?format=json")["/track"]["POST"]
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )


def with_live_source(case, source_id: str) -> None:
    """Most generated source ids exist nowhere (401). A schema-valid one becomes the live
    source's, so a good share of requests goes all the way to the queue; an invalid one stays
    (its case must still be refused)."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("source"), dict):
        generated = body["source"].get("id")
        if isinstance(generated, str) and generated.strip() and len(generated) <= 100:
            body["source"]["id"] = source_id


def test_track_against_its_schema(live_api: str, make_source) -> None:
    """Schemathesis' generated requests (its pytest plugin does not run on this pytest
    version, so the strategies are driven by Hypothesis here); every answer is checked."""
    source_id = make_source(id="schemathesis-src").id
    statuses: Counter[int] = Counter()

    @given(case=generated_cases(live_api))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=os.environ.get("SCHEMATHESIS_RANDOM") != "1",  # the same requests on every run, unless asked
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case) -> None:
        with_live_source(case, source_id)
        response = case.call_and_validate(base_url=live_api, checks=CHECKS, timeout=30)
        statuses[response.status_code] += 1

    check()
    total = sum(statuses.values())
    print(f"schemathesis: {total} requests, statuses {dict(sorted(statuses.items()))}")
    assert total >= EXAMPLES, statuses
    assert statuses[200] + statuses[201] >= total // 5, statuses
    assert not [code for code in statuses if code >= 500], statuses
    requests.get(f"{live_api}/healthz", timeout=5).raise_for_status()


def test_schemathesis_cli_coverage_phase_on_track(live_api: str, make_source, tmp_path) -> None:
    """schemathesis' own runner, as CI would run it: the examples (source.id "locust-test"),
    and the coverage phase's boundary values of every field. positive_data_acceptance is off:
    OpenAPI 3.0 cannot state that keys must not hold U+0000, which /track refuses (422)."""
    make_source(id="locust-test")
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")), "run", f"{live_api}/api/schema/?format=json",
            "--include-path", "/track", "--phases", "examples,coverage",
            "--exclude-checks", "positive_data_acceptance", "--max-examples", "200",
        ],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
