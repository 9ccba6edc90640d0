"""The collector worker: consumes system/collector and does the API's processing."""

from __future__ import annotations

from collections.abc import Sequence

from queueing.broker import OutgoingMessage, ReceivedMessage
from queueing.topics import COLLECTOR
from queueing.worker import Worker, invoked
from tracking.services import collect_queued


@invoked
def execute_tracker_in_queue(messages: Sequence[ReceivedMessage]) -> tuple[list[OutgoingMessage], dict[int | str, str]]:
    outgoing: list[OutgoingMessage] = []
    failures: dict[int | str, str] = {}
    for message in messages:
        try:
            outgoing += collect_queued(message.payload)
        except (KeyError, TypeError, ValueError) as exc:
            failures[message.id] = f"{type(exc).__name__}: {exc}"
    return outgoing, failures


class CollectorWorker(Worker):
    worker_type = "collector"
    topic = COLLECTOR

    def handle(self, messages: Sequence[ReceivedMessage]) -> dict[int | str, str]:
        outgoing, failures = execute_tracker_in_queue(messages)
        # One publish for the whole batch; if it fails, nothing is acknowledged.
        self.broker.publish(outgoing)
        return failures
