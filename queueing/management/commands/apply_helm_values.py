from __future__ import annotations

import json
import os

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from queueing.helm import Scalar, settings_from_helm
from queueing.models import WorkerSettings

ENV_NAME = "TRACARDI_HELM_VALUES"


def flatten(tree: object, prefix: str = "") -> dict[str, Scalar]:
    """{"worker": {"background": {"replicas": 3}}} -> {"worker.background.replicas": 3}."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    flat: dict[str, Scalar] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def apply_helm_values(values: dict) -> dict[str, dict[str, Scalar]]:
    """Writes the worker.<type> values of a Helm values tree into the WorkerSettings rows
    (through queueing.helm.settings_from_helm, the mapping the console shows). Every row is
    validated as the admin would before anything is saved; names it does not know are ignored."""
    fields_by_type = settings_from_helm(flatten(values))
    rows = []
    for worker_type, fields in fields_by_type.items():
        row = WorkerSettings.objects.filter(pk=worker_type).first() or WorkerSettings(worker_type=worker_type)
        for field, value in fields.items():
            setattr(row, field, value)
        try:
            row.full_clean()
        except Exception as exc:  # ValidationError: name the Helm values, not the fields
            raise CommandError(f"worker.{worker_type}: {exc}") from None
        rows.append(row)
    with transaction.atomic():
        for row in rows:
            row.save()
    return fields_by_type


class Command(BaseCommand):
    help = (
        "Writes the Helm chart's worker.<type> values (enabled, replicas, config.loggingLevel, "
        f"config.bulker.*) into the worker settings. The values are JSON, from --json or ${ENV_NAME}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", dest="values_json", help=f"the values as JSON (default: ${ENV_NAME})")

    def handle(self, *args: object, values_json: str | None = None, **options: object) -> None:
        raw = values_json if values_json is not None else os.environ.get(ENV_NAME, "")
        if not raw.strip():
            self.stdout.write(f"apply_helm_values: no values (--json or ${ENV_NAME}); nothing changed")
            return
        try:
            values = json.loads(raw)
        except ValueError as exc:
            raise CommandError(f"the Helm values are not JSON: {exc}") from None
        if not isinstance(values, dict):
            raise CommandError('the Helm values must be a JSON object such as {"worker": {...}}')
        applied = apply_helm_values(values)
        for worker_type, fields in applied.items():
            summary = ", ".join(f"{name}={value}" for name, value in fields.items())
            self.stdout.write(f"apply_helm_values: worker.{worker_type}: {summary}")
