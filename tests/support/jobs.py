"""Messages the tests publish straight to the topics."""

from __future__ import annotations

import uuid

from queueing.broker import OutgoingMessage, get_broker
from queueing.topics import FUNCTIONS
from storage.jobs import StorageJob


def publish_event_job(event_id: str | None = None) -> str:
    """A storage job of one event and no profile or session on system/functions; its event id."""
    event_id = event_id or str(uuid.uuid4())
    job = StorageJob(
        job_id=str(uuid.uuid4()),
        profile=None,
        session=None,
        events=[
            {
                "id": event_id,
                "type": "t",
                "source": {"id": "s"},
                "session": None,
                "profile": None,
                "metadata": {"time": {"insert": "2026-11-29T00:00:00+00:00"}},
            }
        ],
    )
    get_broker().publish([OutgoingMessage(topic=FUNCTIONS, key=event_id, payload=job.to_payload())])
    return event_id
