from django.apps import AppConfig
from django.db.models.signals import post_migrate


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from . import receivers  # noqa: F401 - connects the lifecycle listeners

        post_migrate.connect(schedules_ensure_after_migrate, sender=self)


SCHEDULES = {
    "Send due webhook deliveries": {
        "func": "webhooks.tasks.reconcile",
        "schedule_type": "I",  # Schedule.MINUTES
        "minutes": 1,
    },
}


def schedules_ensure_after_migrate(sender=None, using="default", **kwargs):
    """Create the webhook reconciler's schedule with the tables (the release step migrates)."""
    from django_q.models import Schedule

    for name, fields in SCHEDULES.items():
        Schedule.objects.using(using).update_or_create(name=name, defaults=fields | {"repeats": -1})
