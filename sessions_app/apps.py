from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Interview sessions"

    def ready(self):
        from . import receivers  # noqa: F401 - connects the transcription listeners
