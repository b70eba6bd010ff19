from django.apps import AppConfig


class TranscriptionConfig(AppConfig):
    name = "transcription"
    verbose_name = "Transcription"

    def ready(self):
        from django_q.signals import post_spawn

        from . import worker

        post_spawn.connect(worker.on_worker_spawn, dispatch_uid="transcription-worker-stop")
