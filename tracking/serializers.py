"""Input and output serializers of POST /track (DESIGN.md section 5)."""

from __future__ import annotations

import uuid
from typing import Any

from rest_framework import serializers


class ObjectField(serializers.DictField):
    """A JSON object of anything; null or absent becomes {}."""

    default_error_messages = {"not_a_dict": 'Expected a JSON object but got type "{input_type}".'}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("default", dict)
        super().__init__(child=serializers.JSONField(), **kwargs)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None:
            return True, {}
        return super().validate_empty_values(data)


class IdObjectSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=False)


class SourceSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=100)


class TrackOptionsSerializer(serializers.Serializer):
    queue = serializers.BooleanField(required=False, default=False)
    saveSession = serializers.BooleanField(required=False, default=True)  # noqa: N815 - wire name
    saveEvents = serializers.BooleanField(required=False, default=True)  # noqa: N815
    saveProfile = serializers.BooleanField(required=False, default=True)  # noqa: N815

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Unknown option names are kept: trackers send more than this pipeline reads.
        values = super().to_internal_value(data)
        return {**data, **values}


class EventSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=False)
    type = serializers.CharField(max_length=255)
    properties = ObjectField()
    context = ObjectField()
    options = ObjectField()
    tags = serializers.ListField(child=serializers.CharField(max_length=255), required=False, default=list)
    time = serializers.JSONField(required=False, allow_null=True, default=None)

    def validate_type(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        return value

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        values = super().to_internal_value(data)
        values["id"] = values.get("id") or str(uuid.uuid4())
        return values


class TrackPayloadSerializer(serializers.Serializer):
    source = SourceSerializer()
    session = IdObjectSerializer(required=False, allow_null=True, default=None)
    profile = IdObjectSerializer(required=False, allow_null=True, default=None)
    events = EventSerializer(many=True, required=False, default=list)
    context = ObjectField()
    properties = ObjectField()
    options = TrackOptionsSerializer(required=False, default=dict)
    profile_less = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # An absent "options" skips its serializer, so its defaults are filled in here.
        attrs["options"] = {**TrackOptionsSerializer().to_internal_value({}), **attrs.get("options", {})}
        return attrs


def error_paths(errors: Any, path: str = "$") -> list[dict[str, str]]:
    """Flattens DRF's nested errors into [{"path": "$.events[0].type", "message": ...}]."""
    if isinstance(errors, dict):
        out = []
        for key, value in errors.items():
            if key == "non_field_errors":
                child = path
            elif isinstance(key, int):  # items of a list field
                child = f"{path}[{key}]"
            else:
                child = f"{path}.{key}"
            out += error_paths(value, child)
        return out
    if isinstance(errors, list):
        if all(isinstance(e, str) for e in errors):
            return [{"path": path, "message": str(e)} for e in errors]
        out = []
        for index, value in enumerate(errors):
            out += error_paths(value, f"{path}[{index}]")
        return out
    return [{"path": path, "message": str(errors)}]


class TrackResponseSerializer(serializers.Serializer):
    profile = serializers.DictField(allow_null=True)
    session = serializers.DictField(allow_null=True)
    events = serializers.ListField(child=serializers.CharField())
    errors = serializers.ListField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField())
    ux = serializers.ListField()
    response = serializers.DictField()
    task = serializers.CharField(required=False)
