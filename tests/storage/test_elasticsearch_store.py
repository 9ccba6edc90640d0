"""What only the Elasticsearch store does: per-document bulk errors, retries, unavailability."""

from __future__ import annotations

import threading

import pytest

from queueing.backends.database import DatabaseBroker
from queueing.broker import OutgoingMessage
from queueing.models import QueueMessage
from queueing.topics import FUNCTIONS
from storage.jobs import ProfileChange, ProfileOperation, StorageJob
from storage.store import PROFILES_PER_WRITE, StoreUnavailable
from storage.workers.background import BackgroundWorker
from tests.helpers import wait_for
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def event(event_id: str, inserted: str = "2026-11-29T10:00:00+00:00") -> dict:
    return {
        "id": event_id,
        "type": "t",
        "source": {"id": "s"},
        "session": None,
        "profile": None,
        "metadata": {"time": {"insert": inserted}},
    }


def test_a_document_elasticsearch_refuses_is_reported_by_id_and_the_others_are_saved(es_store):
    # The month comes from a valid time, but the field itself must be a date: this one is refused.
    bad = event("bad") | {"request": {"ip": {"not": "a keyword"}}}
    result = es_store.save_events([event("good-1"), bad, event("good-2")])
    assert result.saved == 2
    assert list(result.errors) == ["bad"]
    assert "document_parsing_exception" in result.errors["bad"] or "mapper_parsing" in result.errors["bad"]
    es_store.refresh()
    assert es_store.get("event", "good-2") and es_store.get("event", "bad") is None


def test_a_batch_larger_than_one_bulk_request_reports_every_chunk(es_store):
    # Three requests of BULK_CHUNK_DOCUMENTS (the last part-full), refused documents in the
    # first and the last; then documents of the first two again, beside a new one.
    from storage.backends.elasticsearch import BULK_CHUNK_DOCUMENTS

    bad = {"request": {"ip": {"not": "a keyword"}}}
    events = [
        event(f"e{n}") | (bad if n in (5, 2 * BULK_CHUNK_DOCUMENTS + 5) else {})
        for n in range(2 * BULK_CHUNK_DOCUMENTS + 10)
    ]
    result = es_store.save_events(events)
    assert result.saved == len(events) - 2
    assert set(result.errors) == {"e5", f"e{2 * BULK_CHUNK_DOCUMENTS + 5}"}
    again = es_store.save_events([event("e1"), event(f"e{BULK_CHUNK_DOCUMENTS + 1}"), event("new")])
    assert (again.saved, again.errors) == (3, {})  # stored before: kept as they were (409), not errors
    es_store.refresh()
    assert es_store.count("event") == len(events) - 2 + 1


def test_a_batch_of_more_profiles_than_one_round_is_read_and_written_round_by_round(es_store, monkeypatch):
    count = PROFILES_PER_WRITE + 5
    changes = [ProfileChange(f"p{n}", f"j{n}", [ProfileOperation("increment", "stats.x", 1)]) for n in range(count)]
    read = []  # ids per mget: a spy on the client, the requests still reach Elasticsearch
    mget = es_store.es.mget
    monkeypatch.setattr(es_store.es, "mget", lambda **kwargs: read.append(len(kwargs["ids"])) or mget(**kwargs))
    assert es_store.apply_profile_changes(changes).saved == count
    assert read == [PROFILES_PER_WRITE, 5]
    assert es_store.apply_profile_changes(changes).saved == 0  # redelivered: every round skips its jobs
    assert {es_store.get("profile", f"p{n}")["stats"]["x"] for n in range(count)} == {1}


def test_a_document_json_cannot_carry_is_an_error_of_its_own_not_an_outage(es_store):
    from elasticsearch import SerializationError

    with pytest.raises(SerializationError):  # not StoreUnavailable: the worker isolates the message
        es_store.save_events([event("odd") | {"properties": {"value": object()}}])


def test_the_worker_acknowledges_the_good_messages_and_retries_only_the_refused_one(es_store, worker_settings):
    worker_settings("background", min_batch_size=1, max_time_in_buffer=0)
    broker = DatabaseBroker()
    good = StorageJob(job_id="j1", profile=None, session=None, events=[event("good-1")])
    bad = StorageJob(job_id="j2", profile=None, session=None, events=[event("bad") | {"request": {"ip": {"x": 1}}}])
    broker.publish(
        [OutgoingMessage(topic=FUNCTIONS, key=k, payload=j.to_payload()) for k, j in (("a", good), ("b", bad))]
    )
    worker = BackgroundWorker(broker=broker, store=es_store)
    assert worker.process_batch() == 2
    worker.consumer.close()
    (left,) = QueueMessage.objects.filter(topic="functions")
    assert left.key == "b" and "event bad:" in left.error and left.deliveries == 1


def test_an_unreachable_elasticsearch_is_retried_then_reported_unavailable(tenant):
    from storage.backends.elasticsearch import ElasticsearchStore

    store = ElasticsearchStore(hosts=[f"http://127.0.0.1:{free_port()}"], attempts=3, backoff=0.01)
    with pytest.raises(StoreUnavailable, match="did not answer after 3 attempts"):
        store.save_events([event("e1")])


def test_while_the_store_is_down_the_worker_keeps_the_batch_and_spends_no_redelivery(tenant, worker_settings, caplog):
    from storage.backends.elasticsearch import ElasticsearchStore

    worker_settings("background", min_batch_size=1, max_time_in_buffer=0)
    broker = DatabaseBroker()
    job = StorageJob(job_id="j1", profile=None, session=None, events=[event("e1")])
    broker.publish([OutgoingMessage(topic=FUNCTIONS, key="k", payload=job.to_payload())])
    down = ElasticsearchStore(hosts=[f"http://127.0.0.1:{free_port()}"], attempts=2, backoff=0.01)
    worker = BackgroundWorker(broker=broker, store=down)

    def retries() -> list[str]:
        return [r.getMessage() for r in list(caplog.records) if "retrying the batch of 1" in r.getMessage()]

    def stop_after_the_second_retry() -> None:
        try:
            wait_for(lambda: len(retries()) >= 2, timeout=60, message="two retries of the batch")
        finally:
            worker.stopping = True  # as SIGTERM does

    stopper = threading.Thread(target=stop_after_the_second_retry, daemon=True)
    stopper.start()
    worker.process_batch()
    stopper.join()
    worker.consumer.close()
    assert [m.rsplit(" ", 1)[-1] for m in retries()[:2]] == ["1s", "2s"]  # a growing delay
    (message,) = QueueMessage.objects.filter(topic="functions")
    assert message.error == "" and message.deliveries == 1 and message.available_at == 0  # never nacked
    assert not QueueMessage.objects.filter(topic="functions-DLQ").exists()
