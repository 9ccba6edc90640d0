"""The Elasticsearch store's orjson serializers: the same JSON as orjson, each line its own size."""

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


def test_ndjson_bodies_end_each_line_with_a_newline_and_parse_back():
    serializer = SERIALIZERS["application/x-ndjson"]
    lines = [{"create": {"_index": "i", "_id": "1"}}, {"id": "1"}, b'{"delete":{"_id":"2"}}']
    body = serializer.dumps(lines)
    assert body == b'{"create":{"_index":"i","_id":"1"}}\n{"id":"1"}\n{"delete":{"_id":"2"}}\n'
    assert serializer.loads(body) == [{"create": {"_index": "i", "_id": "1"}}, {"id": "1"}, {"delete": {"_id": "2"}}]
