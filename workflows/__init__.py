"""Orchestration: trigger rules, workflows and their published versions, the workflow worker,
and the outbox that calls external systems (docs/architecture.md)."""
