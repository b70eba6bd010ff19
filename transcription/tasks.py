"""Django-Q jobs: each takes an id, reads fresh state, and is safe to run twice."""

from django.conf import settings

from . import maintenance, services


def transcribe(transcription_id: int) -> str:
    """Transcribe one stored recording (the job ``transcription_create`` enqueues)."""
    return services.transcription_run(transcription_id=transcription_id)


def reconcile() -> str:
    """Give every queued transcription a job and release lost ones (every minute)."""
    return str(maintenance.reconcile())


def cleanup_audio() -> str:
    """Delete audio nothing needs any more (hourly)."""
    return str(maintenance.cleanup_audio(hours=settings.AUDIO_RETENTION_HOURS))


def prune_task_results() -> str:
    """Keep the newest Q_SUCCESS_KEEP successful results (hourly)."""
    return f"deleted {maintenance.prune_task_results(keep=settings.Q_SUCCESS_KEEP)}"
