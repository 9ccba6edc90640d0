"""The outbox: external calls recorded with the workflow run, sent by django-q2.

    enqueue_delivery(kind=..., key=..., request=..., destination=None, origin={...}) -> Delivery
    destination_deliveries(event=..., profile_before=..., profile_after=...) -> [PlannedDelivery]
    deliver(delivery_id)            the django-q2 task (workflows.outbox.delivery.deliver)
    replay(deliveries), replay_all_dead(), resume_destination(destination)

See scheduling.py for how retries reach django-q2 on time, senders.py for what is retried.
"""

from workflows.outbox.delivery import deliver
from workflows.outbox.destinations import PlannedDelivery, delivery_key, destination_deliveries
from workflows.outbox.scheduling import requeue_lost
from workflows.outbox.services import check_request, enqueue_delivery, replay, replay_all_dead, resume_destination

__all__ = [
    "PlannedDelivery",
    "check_request",
    "deliver",
    "delivery_key",
    "destination_deliveries",
    "enqueue_delivery",
    "replay",
    "replay_all_dead",
    "requeue_lost",
    "resume_destination",
]
