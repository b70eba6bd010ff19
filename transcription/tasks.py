"""Django-Q jobs: each takes an answer id, reads fresh state, and is safe to run twice."""

import logging
import random
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import schedule

from sessions_app.models import Answer
from sessions_app.scoring import ScoringError
from sessions_app.services import answer_score

from . import storage
from .backends import TranscriptionError, get_transcriber

logger = logging.getLogger(__name__)


def transcribe_answer(answer_id: int) -> str:
    """Transcribe one answer's audio, save the transcript, delete the audio, score the answer."""
    answer = _claim(answer_id)
    if answer is None:
        # Another delivery has it, or it is done: finish a deletion that a crash interrupted.
        if Answer.objects.filter(
            pk=answer_id, transcription_status=Answer.Status.COMPLETED, gridfs_file_id__isnull=False
        ).exists():
            _delete_audio(Answer.objects.get(pk=answer_id))
        return "not claimed"

    file_id = answer.gridfs_file_id
    logger.info(
        "Starting transcription: session=%s, question=%s, answer=%s, attempt=%s",
        answer.session_id,
        answer.question_id,
        answer.pk,
        answer.attempts,
    )
    try:
        storage.set_audio_status(file_id, Answer.Status.PROCESSING)
        audio = storage.get_audio(file_id)
        transcript = get_transcriber().transcribe(
            audio,
            language=answer.session.language or None,
            content_type=answer.content_type or "application/octet-stream",
            filename=f"answer-{answer.pk}",
        )
    except storage.AudioNotFound:
        return _fail(answer, file_id, "The audio is no longer stored; record the answer again.")
    except storage.StorageUnavailable as exc:
        return _retry_later(answer, file_id, f"Could not read the audio: {exc}")
    except TranscriptionError as exc:
        if exc.permanent:
            return _fail(answer, file_id, str(exc))
        return _retry_later(answer, file_id, str(exc))
    except Exception as exc:
        logger.exception("Transcription crashed: answer=%s", answer.pk)
        return _fail(answer, file_id, f"Transcription failed unexpectedly: {exc!r}")

    saved = Answer.objects.filter(
        pk=answer.pk, transcription_status=Answer.Status.PROCESSING, gridfs_file_id=file_id
    ).update(
        transcription_status=Answer.Status.COMPLETED,
        transcript=transcript.text,
        language=transcript.language,
        transcribed_at=timezone.now(),
        transcription_error="",
    )
    if not saved:
        logger.info("Transcription discarded: answer=%s was re-recorded meanwhile", answer.pk)
        return "superseded"
    logger.info(
        "Transcription completed: session=%s, question=%s, answer=%s, language=%s, words=%s",
        answer.session_id,
        answer.question_id,
        answer.pk,
        transcript.language,
        len(transcript.text.split()),
    )
    answer.refresh_from_db()
    try:
        _delete_audio(answer)
    except storage.StorageUnavailable as exc:
        # The transcript is committed; cleanup_audio removes the audio of completed answers.
        logger.warning("Audio not deleted, cleanup will: answer=%s: %s", answer.pk, exc)
    try:
        answer_score(answer=answer)
    except ScoringError as exc:
        # The transcript is safe; analyze scores whatever is left unscored.
        logger.warning("Scoring failed, analyze will retry: answer=%s: %s", answer.pk, exc)
    return "completed"


def _claim(answer_id: int) -> Answer | None:
    """Move the answer from queued to processing in one update; None if another run has it."""
    now = timezone.now()
    # A claim older than the queue's timeout belongs to a worker that was killed.
    abandoned = now - timedelta(seconds=settings.Q_CLUSTER["timeout"])
    claimed = (
        Answer.objects.filter(pk=answer_id)
        .filter(
            Q(transcription_status=Answer.Status.QUEUED)
            | Q(transcription_status=Answer.Status.PROCESSING, processing_started_at__lt=abandoned)
        )
        .update(
            transcription_status=Answer.Status.PROCESSING,
            processing_started_at=now,
            next_attempt_at=None,
            attempts=F("attempts") + 1,
        )
    )
    if not claimed:
        return None
    return Answer.objects.select_related("session").get(pk=answer_id)


def _fail(answer: Answer, file_id: str, error: str) -> str:
    """Record why the transcription failed; the audio stays for a manual re-queue."""
    Answer.objects.filter(
        pk=answer.pk, transcription_status=Answer.Status.PROCESSING, gridfs_file_id=file_id
    ).update(transcription_status=Answer.Status.FAILED, transcription_error=error)
    logger.warning(
        "Transcription failed: session=%s, question=%s, answer=%s: %s",
        answer.session_id,
        answer.question_id,
        answer.pk,
        error,
    )
    return "failed"


def _retry_later(answer: Answer, file_id: str, error: str) -> str:
    """Queue the answer again after an exponential, jittered delay; fail it past max attempts."""
    if answer.attempts >= settings.TRANSCRIPTION_MAX_ATTEMPTS:
        return _fail(answer, file_id, f"{error} (gave up after {answer.attempts} attempts)")
    delay = settings.TRANSCRIPTION_RETRY_BASE_SECONDS * 2 ** (answer.attempts - 1)
    # Jitter spreads the retries of many answers that failed together (an API outage).
    next_attempt_at = timezone.now() + timedelta(seconds=delay * random.uniform(0.75, 1.25))
    released = Answer.objects.filter(
        pk=answer.pk, transcription_status=Answer.Status.PROCESSING, gridfs_file_id=file_id
    ).update(
        transcription_status=Answer.Status.QUEUED,
        processing_started_at=None,
        next_attempt_at=next_attempt_at,
        transcription_error=f"Attempt {answer.attempts} failed, will retry: {error}",
    )
    if released:
        schedule(
            "transcription.tasks.transcribe_answer",
            answer.pk,
            # Unique even if a re-recorded answer fails again before an old retry ran.
            name=f"retry-answer-{answer.pk}-at-{next_attempt_at:%Y%m%dT%H%M%S.%f}",
            schedule_type=Schedule.ONCE,
            next_run=next_attempt_at,
        )
    logger.warning(
        "Transcription attempt failed, retry at %s: session=%s, question=%s, answer=%s: %s",
        next_attempt_at.isoformat(timespec="seconds"),
        answer.session_id,
        answer.question_id,
        answer.pk,
        error,
    )
    return "retry scheduled"


def _delete_audio(answer: Answer) -> None:
    """Delete the audio of a completed answer; its transcript is already committed."""
    file_id = answer.gridfs_file_id
    storage.delete_audio(file_id)
    Answer.objects.filter(pk=answer.pk, gridfs_file_id=file_id).update(gridfs_file_id=None)
    logger.info(
        "Audio deleted from GridFS after transcription: session=%s, question=%s, file=%s",
        answer.session_id,
        answer.question_id,
        file_id,
    )
