from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"
    # Created by `manage.py setup_schedules` (the release step) with the other schedules.
    schedules = {
        "Send due webhook deliveries": {
            "func": "webhooks.tasks.reconcile",
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": 1,
        },
    }

    def ready(self):
        from . import receivers  # noqa: F401 - connects the lifecycle listeners
