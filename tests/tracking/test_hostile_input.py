"""Hostile and careless input against a live server (gunicorn and worker processes): every
answer is a JSON 4xx or a 2xx, never a 5xx, and every event a 2xx accepted is stored
exactly once."""

from __future__ import annotations

import gzip
import json
import string
from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.models import EventRecord
from tests.helpers import payload, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FUZZ_EXAMPLES = 1000


@pytest.fixture
def pipeline(live_api, spawn, make_source, worker_settings):
    """The live API with a source of its own, and the collector and background workers."""
    worker_settings("collector", enabled=True)
    worker_settings("background", enabled=True, max_batch_size=1000)
    source = make_source()
    spawn("run_worker", "collector")
    spawn("run_worker", "background")
    return live_api, source


def stored_ids(source_id: str) -> set[str]:
    return set(
        EventRecord.objects.filter(source_id=source_id).exclude(type__in=SYSTEM_TYPES).values_list("id", flat=True)
    )


SYSTEM_TYPES = ("profile-created", "session-opened", "visit-started")


def wait_until_stored(source_id: str, accepted: set[str]) -> None:
    wait_for(lambda: stored_ids(source_id) >= accepted, timeout=120, message="every accepted event stored")
    assert stored_ids(source_id) == accepted  # nothing more: nothing refused was stored, nothing twice


def check(response: requests.Response) -> None:
    assert response.status_code < 500, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    response.json()


def deep(depth: int) -> str:
    return '{"a":' * depth + "{}" + "}" * depth


HOSTILE_BODIES = {
    "empty": b"",
    "whitespace": b"   ",
    "not json": b"hello",
    "truncated": b'{"source": {"id": "x"}, "events": [',
    "invalid utf-8": b'{"source": {"id": "\xff\xfe"}}',
    "lone surrogate": b'{"source": {"id": "SRC"}, "events": [{"type": "\\ud800"}]}',
    "NaN": b'{"source": {"id": "SRC"}, "events": [{"type": "x", "properties": {"n": NaN}}]}',
    "1e400": b'{"source": {"id": "SRC"}, "events": [{"type": "x", "properties": {"n": 1e400}}]}',
    "deep 252": b'{"source": {"id": "SRC"}, "events": [{"type": "x", "properties": DEEP252}]}',
    "deep 5000": b'{"source": {"id": "SRC"}, "events": [{"type": "x", "context": DEEP5000}]}',
    "nul in key": b'{"source": {"id": "SRC"}, "events": [{"type": "x", "properties": {"\\u0000": 1}}]}',
    "huge number": b'{"source": {"id": "SRC"}, "events": [{"type": "x", "properties": {"n": 1' + b"0" * 400 + b"}}]}",
    "null everything": b'{"source": null, "session": null, "profile": null, "events": null, "options": null}',
    "events of nulls": b'{"source": {"id": "SRC"}, "events": [null, 1, "x", []]}',
    "array": b"[1, 2, 3]",
    "string": b'"track"',
}
ACCEPTED_BODIES = {
    "duplicate keys": b'{"source": {"id": "SRC"}, "events": [{"type": "a", "type": "dup-keys"}]}',
    "nul in value": b'{"source": {"id": "SRC"}, "events": [{"type": "nul-value", "properties": {"s": "a\\u0000b"}}]}',
    "big integer": b'{"source": {"id": "SRC"}, "events": [{"type": "big-int", "properties": {"n": 1'
    + b"0" * 30
    + b"}}]}",
    "huge string": b'{"source": {"id": "SRC"}, "events": [{"type": "huge", "properties": {"s": "'
    + b"x" * 1_000_000
    + b'"}}]}',
    "emoji and rtl": '{"source": {"id": "SRC"}, "events": [{"type": "\U0001f600\u202e", "tags": ["\u00e9"]}]}'.encode(),
}
CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "application/octet-stream",
    "",
]


def body_for(template: bytes, source_id: str) -> bytes:
    return (
        template.replace(b"SRC", source_id.encode())
        .replace(b"DEEP252", deep(252).encode())
        .replace(b"DEEP5000", deep(5000).encode())
    )


def test_hostile_bodies_and_content_types_get_a_json_4xx_or_2xx_and_accepted_events_are_stored(pipeline):
    url, source = pipeline
    accepted: set[str] = set()
    with requests.Session() as http:
        for name, template in {**HOSTILE_BODIES, **ACCEPTED_BODIES}.items():
            for content_type in CONTENT_TYPES:
                headers = {"Content-Type": content_type} if content_type else {}
                response = http.post(f"{url}/track", data=body_for(template, source.id), headers=headers, timeout=30)
                check(response)
                if name in HOSTILE_BODIES:
                    assert 400 <= response.status_code < 500, (name, response.text[:200])
                elif response.status_code == 413:
                    assert name == "huge string"  # over TRACK_MAX_BODY_BYTES with the envelope
                else:
                    assert response.status_code == 200, (name, content_type, response.text[:200])
                    accepted.update(response.json()["events"])
    wait_until_stored(source.id, accepted)


# --- the property-based fuzzer -----------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
objects = st.dictionaries(st.text(max_size=12), json_values, max_size=5)


def mostly(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Valid nine times in ten, anything JSON otherwise: many payloads reach the storage
    path, and every field is also tried with every wrong type."""
    return st.integers(min_value=0, max_value=9).flatmap(lambda n: valid if n else json_values)


event_types = mostly(st.one_of(st.sampled_from(["page-view", "purchase", "click"]), st.text(max_size=20)))
events = st.fixed_dictionaries(
    {"type": event_types},
    optional={
        "id": mostly(st.text(alphabet=string.ascii_letters, min_size=1, max_size=3)),
        "properties": mostly(objects),
        "context": mostly(objects),
        "options": mostly(objects),
        "tags": mostly(st.lists(st.text(max_size=8), max_size=3)),
        "time": json_values,
    },
)


def payloads(source_id: str) -> st.SearchStrategy:
    ids = mostly(st.text(alphabet=string.ascii_letters, min_size=1, max_size=4))
    return st.fixed_dictionaries(
        {"source": mostly(st.just({"id": source_id}))},
        optional={
            "session": mostly(st.fixed_dictionaries({"id": ids})),
            "profile": mostly(st.fixed_dictionaries({"id": ids})),
            "events": mostly(st.lists(events, max_size=5)),
            "context": mostly(objects),
            "properties": mostly(objects),
            "options": mostly(
                st.fixed_dictionaries({}, optional={"queue": st.booleans(), "saveEvents": st.booleans()})
            ),
            "profile_less": mostly(st.booleans()),
        },
    )


def test_generated_payloads_never_get_a_5xx_and_every_accepted_event_is_stored_once(pipeline):
    url, source = pipeline
    accepted: set[str] = set()
    statuses: dict[int, int] = {}
    http = requests.Session()

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same 1,000 payloads on every run: a failure is reproducible
        suppress_health_check=list(HealthCheck),
    )
    @given(payloads(source.id))
    def post_one(body: dict) -> None:
        response = http.post(f"{url}/track", data=json.dumps(body), headers={"Content-Type": "application/json"})
        check(response)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code in (200, 201):
            saved = body.get("options", {}) if isinstance(body.get("options"), dict) else {}
            if saved.get("saveEvents") is not False:
                accepted.update(response.json()["events"])

    post_one()
    http.close()
    assert sum(statuses.values()) >= FUZZ_EXAMPLES
    assert statuses.get(200, 0) + statuses.get(201, 0) > 200, statuses  # the fuzzer reaches the storage path
    assert statuses.get(422, 0) > 100, statuses  # and the validation
    wait_until_stored(source.id, accepted)


def test_a_plain_payload_still_works_after_the_fuzzing(pipeline):
    url, source = pipeline
    response = requests.post(f"{url}/track", json=payload(source.id), timeout=10)
    assert response.status_code == 200


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    """A generator body: requests sends it with Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_chunked_body_is_read_whole_and_bounded_like_any_other(live_api, make_source):
    source = make_source()
    body = json.dumps(payload(source.id, events=[{"type": "a"}, {"type": "b"}])).encode()
    headers = {"Content-Type": "application/json"}
    response = requests.post(f"{live_api}/track", data=chunked(body, 7), headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert len(response.json()["events"]) == 2
    compressed = {**headers, "Content-Encoding": "gzip"}
    response = requests.post(f"{live_api}/track", data=chunked(gzip.compress(body), 16), headers=compressed, timeout=30)
    assert response.status_code == 200, response.text
    too_big = json.dumps(payload(source.id, events=[{"type": "a", "properties": {"s": "x" * 1_100_000}}])).encode()
    response = requests.post(f"{live_api}/track", data=chunked(too_big, 65536), headers=headers, timeout=30)
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body is larger than TRACK_MAX_BODY_BYTES (1048576 bytes)."}


def test_a_chunked_body_the_server_cannot_read_to_its_end_gets_411(client, make_source):
    """A WSGI server that does not mark the end of a chunked input (no wsgi.input_terminated)."""
    body = json.dumps(payload(make_source().id)).encode()
    response = client.post(
        "/track", data=body, content_type="application/json", HTTP_TRANSFER_ENCODING="chunked", CONTENT_LENGTH=""
    )
    assert response.status_code == 411
    assert response.json() == {"detail": "Send the body with a Content-Length: this server cannot read it chunked."}
