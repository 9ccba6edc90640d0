"""The workflow worker: consumes system/workflow and runs the workflows stored events
triggered (`manage.py run_worker workflow`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction

from queueing import faults
from queueing.broker import ReceivedMessage
from queueing.topics import WORKFLOW
from queueing.worker import Worker, invoked
from storage.store import Store, StoreUnavailable, get_store
from workflows.services import BatchState, mark_published, run_message

logger = logging.getLogger("workflows.workers")


@invoked
def run_workflows(store: Store, messages: Sequence[ReceivedMessage]) -> tuple[BatchState, dict[int | str, str]]:
    """Runs the messages' workflows in message order (a profile's messages are in order);
    a run's failure is recorded on the run, so only a malformed message fails here."""
    state = BatchState(store=store)
    failures: dict[int | str, str] = {}
    # One transaction for the batch's run records and outbox rows (a savepoint per message):
    # on SQLite every write transaction waits for the one write lock, so one per run would
    # make the lock, not the runs, the limit.
    with transaction.atomic():
        for message in messages:
            try:
                with transaction.atomic():
                    run_message(message.payload, state)
            except (KeyError, TypeError, ValueError) as exc:
                failures[message.id] = f"{type(exc).__name__}: {exc}"
    return state, failures


class WorkflowWorker(Worker):
    worker_type = "workflow"
    topic = WORKFLOW
    transient_errors = (*Worker.transient_errors, StoreUnavailable)

    def __init__(self, *, store: Store | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.store = store or get_store()

    def handle(self, messages: Sequence[ReceivedMessage]) -> dict[int | str, str]:
        state, failures = run_workflows(self.store, messages)
        faults.pause_at("workflow_runs_recorded")
        # The runs' changes, as storage jobs: if this publish fails, the batch is redelivered
        # and each run publishes again from what it recorded (the store applies it once).
        self.broker.publish(state.jobs)
        mark_published(state.run_keys)
        logger.info("Workflows: Ran %d message(s), Jobs=%d, Failed=%d", len(messages), len(state.jobs), len(failures))
        return failures
