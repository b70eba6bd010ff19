"""Counters and histograms from the transcription lifecycle signal, in the process that made
each change (the web for uploads and re-queues, a qcluster worker for the job)."""

import logging
import re

from . import errors, metrics

logger = logging.getLogger(__name__)

# A failed transcription's error is written for the candidate; the metric needs few, stable
# labels. The first pattern that matches names the reason.
FAILURE_REASONS = [
    ("audio_missing", re.compile(r"no longer stored|expired|record (the|this) answer again", re.I)),
    ("gave_up", re.compile(r"gave up|attempts", re.I)),
    ("lost_worker", re.compile(r"worker|stuck|lost", re.I)),
    ("unexpected", re.compile(r"unexpected", re.I)),
    ("bad_audio", re.compile(r"audio|decode|corrupt|invalid", re.I)),
]


def failure_reason(error: str) -> str:
    for reason, pattern in FAILURE_REASONS:
        if pattern.search(error or ""):
            return reason
    return "engine"


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
        metrics.transcription_failures.labels(reason=failure_reason(transcription.error)).inc()
    elif new_status == "queued" and old_status == "processing":
        metrics.retries.inc()


def _tag_job(transcription):
    """The job that claimed this transcription: its errors carry these ids, never content."""
    from sessions_app.models import Answer

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
