"""The worker settings as the Helm chart's values: ONE table, used by the console's "Helm
values" view and meant for a test of the chart (its values.yaml must use these names).

The YAML is written by hand: it is a few nested keys with booleans, numbers and quoted
strings, and PyYAML is not a dependency of the project (not worth one for this).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from queueing.models import WorkerSettings, WorkerType

Scalar = bool | int | float | str


@dataclass(frozen=True)
class HelmValue:
    field: str  # WorkerSettings field
    path: str  # under worker.<type>.


HELM_VALUES: tuple[HelmValue, ...] = (
    HelmValue("enabled", "enabled"),
    HelmValue("replicas", "replicas"),
    HelmValue("logging_level", "config.loggingLevel"),
    HelmValue("min_batch_size", "config.bulker.minBatchSize"),
    HelmValue("max_batch_size", "config.bulker.maxBatchSize"),
    HelmValue("max_time_in_buffer", "config.bulker.maxTimeInBuffer"),
)


def helm_name(worker_type: str, value: HelmValue) -> str:
    """The dotted Helm value name, e.g. worker.background.config.loggingLevel."""
    return f"worker.{worker_type}.{value.path}"


def helm_values(rows: Iterable[WorkerSettings]) -> dict[str, Scalar]:
    """{dotted Helm name: value} for the given worker settings, in the chart's order."""
    by_type = {row.worker_type: row for row in rows}
    return {
        helm_name(t, value): getattr(by_type[t], value.field)
        for t in WorkerType.values
        if t in by_type
        for value in HELM_VALUES
    }


def settings_from_helm(values: dict[str, Scalar]) -> dict[str, dict[str, Scalar]]:
    """The inverse: {worker type: {WorkerSettings field: value}} for the names it knows."""
    fields: dict[str, dict[str, Scalar]] = {}
    for t in WorkerType.values:
        for value in HELM_VALUES:
            name = helm_name(t, value)
            if name in values:
                fields.setdefault(t, {})[value.field] = values[name]
    return fields


def yaml_scalar(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_yaml(values: dict[str, Scalar]) -> str:
    """Nested block YAML of dotted names, keys in first-seen order, two-space indents."""
    tree: dict = {}
    for name, value in values.items():
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    lines: list[str] = []

    def emit(node: dict, depth: int) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                lines.append(f"{'  ' * depth}{key}:")
                emit(value, depth + 1)
            else:
                lines.append(f"{'  ' * depth}{key}: {yaml_scalar(value)}")

    emit(tree, 0)
    return "\n".join(lines) + "\n"


def current_helm_yaml() -> str:
    return to_yaml(helm_values(WorkerSettings.objects.all()))
