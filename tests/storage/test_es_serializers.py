"""The Elasticsearch store's orjson serializer: orjson's JSON, and the standard library's where orjson refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from storage.backends.elasticsearch import SERIALIZERS


def test_json_lines_are_orjsons_output_and_the_clients_types_still_serialize():
    serializer = SERIALIZERS["application/json"]
    document = {"id": "e1", "properties": {"n": 1, "f": 0.5, "ok": True, "none": None, "text": "zażółć"}}
    assert serializer.dumps(document) == orjson.dumps(document)
    # What the client's own serializer accepts beyond JSON: dates natively, Decimal by its default().
    when = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert json.loads(serializer.dumps({"at": when, "price": Decimal("1.50")})) == {
        "at": "2026-11-30T10:00:00+00:00",
        "price": 1.5,
    }
    assert serializer.loads(b'{"a": [1, 2]}') == {"a": [1, 2]}


def test_what_orjson_refuses_goes_the_standard_librarys_way():
    # A profile's increments can pass 64 bits; orjson refuses such an integer, JSON does not.
    serializer = SERIALIZERS["application/json"]
    assert serializer.dumps({"spent": 2**70}) == b'{"spent":1180591620717411303424}'
    assert json.loads(serializer.dumps({"text": "a\ud800b"})) == {"text": "a\ud800b"}
