"""Django-Q jobs for webhooks: they take ids and are safe to run twice."""

import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import schedule

from . import services


def deliver(delivery_id: int) -> str:
    """Attempt a delivery; wait for a short retry here, schedule a longer one."""
    while True:
        outcome = services.delivery_send(delivery_id=delivery_id)
        if outcome.retry_in is None:
            return outcome.result
        if outcome.retry_in > settings.WEBHOOK_RETRY_IN_WORKER_SECONDS:
            break
        # The scheduler looks every 30 s: a wait of a few seconds is kept here instead.
        time.sleep(outcome.retry_in)
    next_run = timezone.now() + timedelta(seconds=outcome.retry_in)
    schedule(
        "webhooks.tasks.deliver",
        delivery_id,
        name=f"webhook-{delivery_id}-at-{next_run:%Y%m%dT%H%M%S.%f}",
        schedule_type=Schedule.ONCE,
        next_run=next_run,
    )
    return "retry scheduled"


def reconcile() -> str:
    """Enqueue due deliveries whose job was lost (a Django-Q schedule, every minute)."""
    return f"enqueued {services.deliveries_reconcile()} due deliveries"
