from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Interview sessions"
    # Created by `manage.py setup_schedules` (the release step) with the other schedules.
    schedules = {
        "Delete sessions past TRANSCRIPT_RETENTION_DAYS": {
            "func": "sessions_app.tasks.sessions_expire",
            "schedule_type": "H",  # Schedule.HOURLY
        },
    }

    def ready(self):
        from . import receivers  # noqa: F401 - connects the transcription listeners
