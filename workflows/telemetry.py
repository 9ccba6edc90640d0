"""Prometheus metrics of workflow runs and outbox deliveries (tracardi_site/observability.py
serves them)."""

from __future__ import annotations

from prometheus_client import Counter

RUNS = Counter("tracardi_workflow_runs", "Workflow runs recorded, by outcome (ok, failed).", ["outcome"])
DELIVERIES = Counter(
    "tracardi_outbox_deliveries",
    "Outbox delivery attempts, by the delivery's status afterwards (delivered, pending = retry, failed, paused).",
    ["kind", "outcome"],
)


def record_run(outcome: str) -> None:
    RUNS.labels(outcome).inc()


def record_delivery(kind: str, outcome: str) -> None:
    DELIVERIES.labels(kind, outcome).inc()
