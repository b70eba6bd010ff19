from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Interview sessions"

    def ready(self):
        from . import receivers  # noqa: F401 - connects the transcription listeners

        post_migrate.connect(schedules_ensure_after_migrate, sender=self)


SCHEDULES = {
    "Delete sessions past TRANSCRIPT_RETENTION_DAYS": {
        "func": "sessions_app.tasks.sessions_expire",
        "schedule_type": "H",  # Schedule.HOURLY
    },
}


def schedules_ensure_after_migrate(sender=None, using="default", **kwargs):
    """Create the retention schedule with the tables (the release step migrates)."""
    from django_q.models import Schedule

    for name, fields in SCHEDULES.items():
        Schedule.objects.using(using).update_or_create(name=name, defaults=fields | {"repeats": -1})
