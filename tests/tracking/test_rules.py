"""Pre-processing rules: created in the admin, applied by /track within 2 s, identically in the
direct and the queued path; sessions, visits, system events and bot filtering."""

from __future__ import annotations

import json
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from queueing.models import QueueMessage
from storage.store import get_store
from storage.workers.background import BackgroundWorker
from tests.helpers import payload, wait_for
from tracking.models import EventMapping, EventReshaper, EventValidator
from tracking.workers.collector import CollectorWorker

pytestmark = pytest.mark.django_db(transaction=True)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def rule_form(**fields) -> dict:
    form = {"name": "rule", "event_type": "purchase", "source": "", "enabled": "on", "description": ""}
    form.update({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in fields.items()})
    return form


def add_rule(admin_client, model: str, **fields):
    response = admin_client.post(f"/admin/tracking/{model}/add/", rule_form(**fields))
    assert response.status_code == 302, _form_errors(response.content.decode())


def _form_errors(page: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", " ", m).strip()
        for m in re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', page, re.S)
    ]


def purchase(source_id: str, **properties) -> dict:
    return payload(source_id, events=[{"type": "purchase", "properties": properties}])


def drain() -> None:
    """Runs the collector and the background worker in this process until the topics are empty."""
    for worker_class in (CollectorWorker, BackgroundWorker):
        worker = worker_class()
        while worker.process_batch():
            pass
        worker.consumer.close()


def stored_event(event_id: str) -> dict:
    return get_store().get("event", event_id)


def post_live(url: str, body: dict, **headers) -> requests.Response:
    return requests.post(f"{url}/track", json=body, headers=headers, timeout=30)


def test_a_validator_made_in_the_admin_marks_events_invalid_within_2_seconds(live_api, admin_client, make_source):
    source = make_source()
    assert post_live(live_api, purchase(source.id, total="ten")).json()["warnings"] == []
    schema = {"type": "object", "required": ["order_id"], "properties": {"total": {"type": "number"}}}
    add_rule(admin_client, "eventvalidator", name="Purchase", target="properties", schema=schema)

    def warned() -> dict | None:
        answer = post_live(live_api, purchase(source.id, total="ten")).json()
        return answer if answer["warnings"] else None

    answer = wait_for(warned, timeout=2.5, interval=0.1, message="validation warnings within 2 s")
    assert answer["warnings"] == [
        "$.events[0].properties: 'order_id' is a required property (validator Purchase)",
        "$.events[0].properties.total: 'ten' is not of type 'number' (validator Purchase)",
    ]
    drain()
    event = stored_event(answer["events"][0])  # stored, not dropped
    assert event["metadata"]["valid"] is False
    assert event["metadata"]["validation"][1] == ".properties.total: 'ten' is not of type 'number' (validator Purchase)"


def test_a_strict_source_rejects_an_invalid_payload_with_422_and_stores_nothing(client, make_source):
    source = make_source(strict_validation=True)
    EventValidator.objects.create(
        name="Purchase", event_type="purchase", schema={"required": ["order_id"]}, target="properties"
    )
    response = client.post("/track", data=json.dumps(purchase(source.id)), content_type="application/json")
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"path": "$.events[0].properties", "message": "'order_id' is a required property (validator Purchase)"}
    ]
    assert QueueMessage.objects.count() == 0
    ok = client.post("/track", data=json.dumps(purchase(source.id, order_id="A-1")), content_type="application/json")
    assert ok.status_code == 200


def test_a_reshaper_made_in_the_admin_reshapes_within_2_seconds(live_api, admin_client, make_source):
    source = make_source()
    add_rule(
        admin_client,
        "eventreshaper",
        name="Flatten product",
        priority="10",
        properties_template={
            "product": "event@properties.product.id",
            "page": "payload@context.page.url",
            "missing": "event@properties.nope.deeper",
            "kind": "sale",
        },
        context_template={"reshaped": True},
        session_context_template={"last_product": "event@properties.product.id"},
    )
    add_rule(admin_client, "eventreshaper", name="Never", priority="20", properties_template={"x": 1})
    body = purchase(source.id, product={"id": "P-9"}, other=1) | {"context": {"page": {"url": "https://s.example/p"}}}
    wait_for(
        lambda: (
            post_live(live_api, body).json()
            and _published_properties()
            == {
                "product": "P-9",
                "page": "https://s.example/p",
                "missing": None,
                "kind": "sale",
            }
        ),
        timeout=2.5,
        interval=0.1,
        message="the reshaped properties within 2 s",
    )


def _published_properties() -> dict | None:
    message = QueueMessage.objects.filter(topic="functions").order_by("-id").first()
    job = json.loads(message.payload)
    return next(e["properties"] for e in job["events"] if e["type"] == "purchase")


def test_a_mapping_made_in_the_admin_updates_the_profile_within_2_seconds(live_api, admin_client, make_source):
    source = make_source()
    add_rule(
        admin_client,
        "eventmapping",
        name="Buyer",
        condition={
            "all": [
                {"path": "event@properties.total", "op": "gte", "value": 100},
                {"path": "event@properties.currency", "op": "in", "value": ["EUR", "USD"]},
            ]
        },
        mappings=[
            {"event": "event@properties.email", "profile": "data.contact.email", "operation": "equals"},
            {"event": "event@properties.total", "profile": "stats.spent", "operation": "increment"},
            {"event": "event@properties.sku", "profile": "data.bought", "operation": "append"},
            {"event": "event@properties.tier", "profile": "segments", "operation": "add_tag"},
            {"event": "event@properties.email", "profile": "traits.first_email", "operation": "equals_if_not_exists"},
        ],
    )
    session = {"id": str(uuid.uuid4())}
    big = purchase(source.id, total=150, currency="EUR", email="a@example.com", sku="S1", tier="gold")

    def mapped() -> dict | None:
        answer = post_live(live_api, big | {"session": session}).json()
        job = json.loads(QueueMessage.objects.filter(topic="functions").order_by("-id").first().payload)
        return answer if any(op["path"] == "stats.spent" for op in job["profile"]["ops"]) else None

    answer = wait_for(mapped, timeout=2.5, interval=0.1, message="mapping operations within 2 s")
    post_live(live_api, purchase(source.id, total=50, currency="EUR", email="small@x", sku="S2") | {"session": session})
    post_live(
        live_api,
        big
        | {
            "session": session,
            "events": [
                {
                    "type": "purchase",
                    "properties": {
                        "total": 200,
                        "currency": "USD",
                        "email": "b@example.com",
                        "sku": "S1",
                        "tier": "gold",
                    },
                }
            ],
        },
    )
    drain()
    profile = get_store().get("profile", answer["profile"]["id"])
    spent = profile["stats"]["spent"]
    # 150 for each round the rule was active in, then 200; the 50 was below the condition
    assert spent >= 350 and (spent - 200) % 150 == 0
    assert profile["data"]["contact"]["email"] == "b@example.com"
    assert profile["traits"]["first_email"] == "a@example.com"
    assert profile["data"]["bought"] == ["S1"]
    assert profile["segments"] == ["gold"]


@pytest.mark.parametrize(
    ("model", "fields", "field", "message"),
    [
        (
            "eventvalidator",
            {"target": "properties", "schema": {"type": "nonsense"}},
            "schema",
            "Invalid JSON Schema: &#x27;nonsense&#x27; is not valid under any of the given schemas",
        ),
        (
            "eventreshaper",
            {"priority": "1", "properties_template": {"a": "event@properties..bad"}},
            "properties_template",
            "is not a path: use &lt;root&gt;@&lt;dot.path&gt;",
        ),
        (
            "eventmapping",
            {"mappings": [{"event": "event@properties.x", "profile": "metadata.time", "operation": "equals"}]},
            "mappings",
            "profile path &#x27;metadata.time&#x27; must start with one of: data, traits, ids",
        ),
        (
            "eventmapping",
            {"mappings": [{"event": "properties.x", "profile": "data.x", "operation": "equals"}]},
            "mappings",
            "is not a path",
        ),
        (
            "eventmapping",
            {"mappings": [{"event": "event@properties.x", "profile": "data.x", "operation": "eval"}]},
            "mappings",
            "operation &#x27;eval&#x27; is not one of",
        ),
        (
            "eventmapping",
            {
                "condition": {"path": "event@properties.x", "op": "gte", "value": "ten"},
                "mappings": [{"event": "event@properties.x", "profile": "data.x", "operation": "equals"}],
            },
            "condition",
            "&#x27;gte&#x27; needs a number",
        ),
    ],
)
def test_the_admin_refuses_bad_rules_with_a_clear_message(admin_client, model, fields, field, message):
    response = admin_client.post(f"/admin/tracking/{model}/add/", rule_form(**fields))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not EventValidator.objects.exists() and not EventReshaper.objects.exists()
    assert not EventMapping.objects.exists()


def test_queued_and_direct_payloads_store_the_same_documents(client, make_source, worker_settings):
    source = make_source()
    worker_settings("collector", enabled=True)
    EventValidator.objects.create(name="V", event_type="purchase", schema={"required": ["order_id"]})
    EventReshaper.objects.create(
        name="R",
        event_type="purchase",
        properties_template={"id": "event@properties.order_id", "browser": "session@context.browser.name"},
        keep_original_properties=True,
        session_context_template={"o": "event@properties.order_id"},
    )
    EventMapping.objects.create(
        name="M",
        event_type="purchase",
        mappings=[{"event": "event@properties.total", "profile": "stats.spent", "operation": "increment"}],
    )
    results = {}
    for mode in ("direct", "queued"):
        body = payload(
            source.id,
            session={"id": f"session-{mode}"},
            events=[
                {"type": "purchase", "id": f"{mode}-1", "properties": {"order_id": "A", "total": 5}},
                {"type": "purchase", "id": f"{mode}-2", "properties": {"total": 7}},
            ],
            options={"queue": mode == "queued"},
        )
        answer = client.post(
            "/track", data=json.dumps(body), content_type="application/json", headers={"User-Agent": CHROME}
        )
        assert answer.status_code == (201 if mode == "queued" else 200)
        drain()
        store = get_store()
        results[mode] = {
            "events": [_comparable(store.get("event", event_id)) for event_id in answer.json()["events"]],
            "session": _comparable(store.get("session", f"session-{mode}")),
            "profile": _comparable(store.get("profile", answer.json()["profile"]["id"])),
        }
    assert results["direct"] == results["queued"]
    assert results["direct"]["events"][1]["metadata"]["valid"] is False
    assert results["direct"]["events"][0]["properties"] == {"order_id": "A", "total": 5, "id": "A", "browser": "Chrome"}
    assert results["direct"]["profile"]["stats"]["spent"] == 5  # the invalid event is not mapped


def _comparable(document: dict) -> dict:
    """Without what differs between two requests by nature: ids and times."""
    volatile = {"id", "time", "session", "profile", "metadata.time", "metadata.client_id", "request"}

    def strip(value, path=""):
        if isinstance(value, dict):
            return {
                k: strip(v, f"{path}.{k}".strip("."))
                for k, v in value.items()
                if f"{path}.{k}".strip(".") not in volatile
            }
        return value

    return strip(document)


def test_a_new_session_records_device_utm_and_visits_and_system_events(client, make_source):
    source = make_source(static_profile_id=True)
    context = {
        "page": {"url": "https://shop.example/?utm_source=news&utm_campaign=winter"},
        "time": {"tz": "Europe/Warsaw"},
    }
    first = payload(source.id, profile={"id": "crm-7"}, context=context)
    answer = client.post(
        "/track", data=json.dumps(first), content_type="application/json", headers={"User-Agent": CHROME}
    ).json()
    second = payload(source.id, profile={"id": "crm-7"})  # another session, same profile
    client.post("/track", data=json.dumps(second), content_type="application/json")
    drain()
    store = get_store()
    session = store.get("session", answer["session"]["id"])
    assert session["context"]["browser"] == {"name": "Chrome", "version": "120.0.0"}
    assert session["context"]["os"]["name"] == "Windows"
    assert session["context"]["bot"] is False
    assert session["context"]["utm"] == {"source": "news", "campaign": "winter"}
    assert session["context"]["time"] == {"tz": "Europe/Warsaw"}
    visit = store.get("profile", "crm-7")["metadata"]["time"]["visit"]
    assert visit["count"] == 2 and visit["last"] and visit["current"] > visit["last"]
    store.refresh()
    types = sorted(e["type"] for e in store.search("event", profile_id="crm-7"))
    assert types == [
        "page-view",
        "page-view",
        "profile-created",
        "session-opened",
        "session-opened",
        "visit-started",
        "visit-started",
    ]


def test_bots_are_rejected_or_marked_as_the_source_says(client, make_source):
    rejecting, marking = make_source(bot_filter="reject"), make_source(bot_filter="mark")
    response = client.post(
        "/track",
        data=json.dumps(payload(rejecting.id)),
        content_type="application/json",
        headers={"User-Agent": GOOGLEBOT},
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "Bot traffic is not accepted by this event source."}
    human = client.post(
        "/track",
        data=json.dumps(payload(rejecting.id)),
        content_type="application/json",
        headers={"User-Agent": CHROME},
    )
    assert human.status_code == 200
    marked = client.post(
        "/track",
        data=json.dumps(payload(marking.id)),
        content_type="application/json",
        headers={"User-Agent": GOOGLEBOT},
    ).json()
    drain()
    assert stored_event(marked["events"][0])["bot"] is True
    assert get_store().get("session", marked["session"]["id"])["context"]["bot"] is True


def test_the_test_action_shows_the_result_and_stores_nothing(admin_client):
    rule = EventMapping.objects.create(
        name="Spent",
        event_type="purchase",
        enabled=False,
        mappings=[{"event": "event@properties.total", "profile": "stats.spent", "operation": "increment"}],
    )
    url = "/admin/tracking/eventmapping/"
    form = admin_client.post(url, {"action": "test_rules", "_selected_action": [rule.pk]})
    assert "Sample payload" in form.content.decode()
    sample = json.dumps({"source": {"id": "x"}, "events": [{"type": "purchase", "properties": {"total": 12}}]})
    result = admin_client.post(
        url, {"action": "test_rules", "_selected_action": [rule.pk], "run": "1", "sample": sample}
    )
    page = result.content.decode()
    assert "&quot;op&quot;: &quot;increment&quot;" in page and "&quot;value&quot;: 12" in page
    assert QueueMessage.objects.count() == 0
    bad = admin_client.post(url, {"action": "test_rules", "_selected_action": [rule.pk], "run": "1", "sample": "{"})
    assert "The sample is not JSON" in bad.content.decode()


def test_100_concurrent_events_with_append_and_increment_lose_no_update(live_api, spawn, make_source, worker_settings):
    source = make_source()
    EventMapping.objects.create(
        name="Cart",
        event_type="add-to-cart",
        mappings=[
            {"event": "event@properties.sku", "profile": "data.skus", "operation": "append"},
            {"event": "event@properties.qty", "profile": "stats.items", "operation": "increment"},
        ],
    )
    worker_settings("background", enabled=True, min_batch_size=5, max_time_in_buffer=0.1)
    workers = [spawn("run_worker", "background") for _ in range(2)]
    session = {"id": str(uuid.uuid4())}
    profile_id = post_live(live_api, payload(source.id, session=session)).json()["profile"]["id"]
    barrier = threading.Barrier(4)

    def send(n: int) -> int:
        if n < 4:
            barrier.wait()
        body = payload(
            source.id, session=session, events=[{"type": "add-to-cart", "properties": {"sku": f"S{n}", "qty": 2}}]
        )
        return post_live(live_api, body).status_code

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(send, range(100))) == {200}
    store = get_store()
    wait_for(
        lambda: (store.get("profile", profile_id) or {}).get("stats", {}).get("items") == 200,
        timeout=60,
        message="200 items counted",
    )
    assert sorted(store.get("profile", profile_id)["data"]["skus"]) == sorted(f"S{n}" for n in range(100))
    for worker in workers:
        assert worker.stop() == 0


def test_sessions_with_the_same_user_agent_share_nothing(client, make_source):
    source = make_source()
    leaky = payload(source.id, context={"browser": {"local": {"secret": "visitor-A"}}})
    first = client.post(
        "/track", data=json.dumps(leaky), content_type="application/json", headers={"User-Agent": CHROME}
    )
    second = client.post(
        "/track", data=json.dumps(payload(source.id)), content_type="application/json", headers={"User-Agent": CHROME}
    )
    drain()
    store = get_store()
    assert store.get("session", first.json()["session"]["id"])["context"]["browser"]["local"] == {"secret": "visitor-A"}
    assert store.get("session", second.json()["session"]["id"])["context"]["browser"] == {
        "name": "Chrome",
        "version": "120.0.0",
    }


def test_the_client_cannot_clear_the_bot_flag_the_server_derived(client, make_source):
    source = make_source(bot_filter="mark")
    body = payload(source.id, context={"bot": False, "browser": {"name": "Human"}})
    answer = client.post(
        "/track", data=json.dumps(body), content_type="application/json", headers={"User-Agent": GOOGLEBOT}
    ).json()
    drain()
    context = get_store().get("session", answer["session"]["id"])["context"]
    assert context["bot"] is True and context["browser"]["name"] == "Googlebot"


def test_system_events_are_mapped_like_the_others(client, make_source):
    source = make_source()
    EventMapping.objects.create(
        name="Visits",
        event_type="visit-started",
        mappings=[{"event": "event@type", "profile": "data.seen_types", "operation": "append"}],
    )
    answer = client.post("/track", data=json.dumps(payload(source.id)), content_type="application/json").json()
    drain()
    assert get_store().get("profile", answer["profile"]["id"])["data"]["seen_types"] == ["visit-started"]


def test_the_test_action_runs_validation_and_reshaping_before_the_selected_mapping(admin_client):
    EventReshaper.objects.create(
        name="R", event_type="purchase", properties_template={"amount": "event@properties.total"}
    )
    EventValidator.objects.create(name="V", event_type="purchase", schema={"required": ["total"]})
    rule = EventMapping.objects.create(
        name="Spent",
        event_type="purchase",
        mappings=[{"event": "event@properties.amount", "profile": "stats.spent", "operation": "increment"}],
    )
    sample = json.dumps(
        {
            "source": {"id": "x"},
            "events": [{"type": "purchase", "properties": {"total": 3}}, {"type": "purchase", "properties": {}}],
        }
    )
    page = admin_client.post(
        "/admin/tracking/eventmapping/",
        {
            "action": "test_rules",
            "_selected_action": [rule.pk],
            "run": "1",
            "sample": sample,
        },
    ).content.decode()
    results = json.loads(
        page.split('<pre id="test-result">')[1].split("</pre>")[0].replace("&quot;", '"').replace("&#x27;", "'")
    )
    assert results[0]["event"]["properties"] == {"amount": 3}
    assert results[0]["operations"] == [{"op": "increment", "path": "stats.spent", "value": 3}]
    assert results[1]["valid"] is False and results[1]["operations"] == []
    not_an_object = admin_client.post(
        "/admin/tracking/eventmapping/",
        {
            "action": "test_rules",
            "_selected_action": [rule.pk],
            "run": "1",
            "sample": "[]",
        },
    )
    assert "The sample is not a valid payload: $: Expected an object." in not_an_object.content.decode()
