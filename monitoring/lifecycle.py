"""Counters and histograms from the transcription lifecycle signal, in the process that made
each change (the web for uploads and re-queues, a qcluster worker for the job)."""

import logging

from transcription import services

from . import errors, metrics

logger = logging.getLogger(__name__)


def failure_reason(error: str) -> str:
    """A few stable labels for the candidate-facing error the lifecycle wrote."""
    if error == services.NO_AUDIO:
        return "audio_missing"
    if error == services.UNEXPECTED:
        return "unexpected"
    if "gave up after" in error:
        return "gave_up"  # transient errors (API down, MongoDB unreachable) until max attempts
    if error.startswith("Transcription did not finish"):
        return "lost_worker"  # the reconciler failed it after its workers kept disappearing
    return "engine_rejected"  # a permanent engine error, in the engine's words


def _seconds(later, earlier) -> float | None:
    if later is None or earlier is None:
        return None
    return max((later - earlier).total_seconds(), 0.0)


def record_transition(sender, transcription, old_status, new_status, **kwargs):
    """Count the change; never let a metrics problem break the lifecycle."""
    try:
        _record(transcription, old_status, new_status)
    except Exception:
        logger.exception("Metrics: could not record %s -> %s", old_status, new_status)


def _record(transcription, old_status, new_status):
    if new_status == "processing":
        _tag_job(transcription)
        if transcription.attempts == 1:
            waited = _seconds(transcription.processing_started_at, transcription.created_at)
            if waited is not None:
                metrics.upload_to_processing.observe(waited)
    elif new_status == "completed":
        metrics.transcriptions_finished.labels(status="completed").inc()
        waited = _seconds(transcription.transcribed_at, transcription.created_at)
        if waited is not None:
            metrics.upload_to_completed.observe(waited)
        if transcription.engine_seconds:
            metrics.engine_seconds.inc(transcription.engine_seconds)
        if transcription.audio_seconds:
            metrics.audio_seconds.inc(transcription.audio_seconds)
    elif new_status == "failed":
        metrics.transcriptions_finished.labels(status="failed").inc()
        reason = failure_reason(transcription.error or "")
        metrics.transcription_failures.labels(reason=reason).inc()
    elif new_status == "queued" and transcription.next_attempt_at is not None:
        # A failed attempt waiting for its backoff (a stopping worker's release has none).
        metrics.retries.inc()


def record_reconcile(sender, report, **kwargs):
    metrics.reconciler_requeues.inc(len(report.enqueued) + len(report.released))


def _tag_job(transcription):
    """The job that claimed this transcription: its errors carry these ids, never content."""
    from django.conf import settings

    from sessions_app.models import Answer

    if not settings.SENTRY_DSN:
        return  # no query for a tag nobody reads

    metadata = transcription.metadata or {}
    errors.job_context(
        transcription_id=transcription.pk,
        answer_id=Answer.objects.filter(transcription=transcription)
        .values_list("pk", flat=True)
        .first(),
        session_id=metadata.get("session_id"),
        question_id=metadata.get("question_id"),
        attempt=transcription.attempts,
    )
