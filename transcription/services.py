"""The one owner of a transcription's status: every change goes through ``_transition``.

    (created) -> queued -> processing -> completed
                    ^          |
                    |          +-> failed (permanent error, attempts used up, audio lost)
                    +----------+   processing -> queued: a retry, a release on shutdown,
                    +-- failed     or a lost worker's lease expired; failed -> queued: re-queue

Each change is one conditional UPDATE (the row count says who won); entering ``queued``
commits together with the job that must follow (the ORM broker shares the database); and
each change announces itself once with ``transcription_changed`` after the commit.
"""

import io
import logging
import random
import time
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task, schedule

from . import storage, worker
from .audio import UnreadableAudio, decoded_length
from .backends import TranscriptionError, get_transcriber
from .models import Transcription
from .signals import transcription_changed

logger = logging.getLogger(__name__)

JOB = "transcription.tasks.transcribe"
Status = Transcription.Status
ALLOWED = {
    None: {Status.QUEUED},
    Status.QUEUED: {Status.PROCESSING, Status.FAILED},
    Status.PROCESSING: {Status.COMPLETED, Status.FAILED, Status.QUEUED},
    Status.FAILED: {Status.QUEUED},
    Status.COMPLETED: set(),
}
NO_AUDIO = "The recording is no longer stored; record the answer again."


def too_long_message() -> str:
    return (
        f"The answer is longer than the {settings.MAX_ANSWER_SECONDS} second limit; "
        "record a shorter one."
    )


UNEXPECTED = "Transcription failed unexpectedly; record the answer again or try later."


class RequeueRefused(Exception):
    """The transcription cannot be queued again; the message says why."""


def _announce(transcription: Transcription, old: str | None, new: str) -> None:
    transaction.on_commit(
        partial(_send, transcription=transcription, old_status=old, new_status=new)
    )


def _send(**change) -> None:
    for receiver, error in transcription_changed.send_robust(sender=Transcription, **change):
        if error is not None:
            logger.error(
                "A listener of transcription_changed failed: %s: transcription=%s",
                receiver,
                change["transcription"].pk,
                exc_info=error,
            )


def _transition(
    transcription_id: int, *, old: str, new: str, where: dict | None = None, **fields
) -> Transcription | None:
    """Move one transcription from ``old`` to ``new``; None if it was not in ``old`` any more.

    Entering ``queued`` gives it its job in the same transaction: at once, or at
    ``next_attempt_at`` for a retry.
    """
    if new not in ALLOWED[old]:
        raise ValueError(f"A transcription cannot go from {old} to {new}")
    with transaction.atomic():
        changed = Transcription.objects.filter(
            pk=transcription_id, status=old, **(where or {})
        ).update(status=new, updated_at=timezone.now(), **fields)
        if not changed:
            return None
        transcription = Transcription.objects.get(pk=transcription_id)
        if new == Status.QUEUED:
            _give_a_job(transcription)
        _announce(transcription, old, new)
    return transcription


def _give_a_job(transcription: Transcription) -> None:
    retry_at = transcription.next_attempt_at
    if retry_at is None:
        _enqueue(transcription.pk)
        return
    # Should this schedule be lost, the reconciler enqueues the job once it is due.
    schedule(
        JOB,
        transcription.pk,
        name=f"retry-{transcription.pk}-at-{retry_at:%Y%m%dT%H%M%S.%f}",
        schedule_type=Schedule.ONCE,
        next_run=retry_at,
    )


def _enqueue(transcription_id: int) -> None:
    """Put the job on the queue: in the caller's transaction, so both commit or neither."""
    async_task(JOB, transcription_id, task_name=task_name(transcription_id), group="transcription")


def task_name(transcription_id: int) -> str:
    return f"transcribe-{transcription_id}"


@transaction.atomic(savepoint=False)  # inside a caller's transaction: no savepoint needed
def transcription_create(
    *,
    file_id: str,
    content_type: str,
    language: str = "",
    metadata: dict,
    prompt: str = "",
    audio_seconds: float | None = None,
) -> Transcription:
    """Record a stored recording as queued and enqueue its job, in one transaction.

    ``audio_seconds``, if given, is an estimate (the job measures the audio and replaces it).
    """
    transcription = Transcription.objects.create(
        gridfs_file_id=file_id,
        content_type=content_type,
        language_hint=language,
        metadata=metadata,
        prompt=prompt,
        audio_seconds=audio_seconds,
    )
    _give_a_job(transcription)
    _announce(transcription, None, Status.QUEUED)
    return transcription


def transcription_delete(*, transcription: Transcription) -> None:
    """Forget a transcription and, once that commits, its audio; a later job finds nothing."""
    file_id = transcription.gridfs_file_id
    Transcription.objects.filter(pk=transcription.pk).delete()
    if file_id:
        transaction.on_commit(partial(audio_discard, file_id=file_id))


def audio_discard(*, file_id: str) -> None:
    """Delete audio nothing refers to; if that fails, cleanup_audio removes it later.

    Often run after a commit: raising here would report a saved change as failed.
    """
    try:
        storage.delete_audio(file_id)
    except storage.StorageUnavailable as exc:
        logger.warning("Audio not deleted, cleanup will: file=%s: %s", file_id, exc)
    except Exception:
        logger.exception("Audio not deleted, cleanup will: file=%s", file_id)


def transcription_requeue(*, transcription: Transcription) -> Transcription:
    """Queue a failed (or stuck) transcription again, if its audio is still stored."""
    if not (transcription.status == Status.FAILED or transcription.is_stuck):
        raise RequeueRefused(f"it is {transcription.status}, not failed or stuck")
    file_id = transcription.gridfs_file_id
    if not file_id or not storage.audio_exists(file_id):
        raise RequeueRefused("its audio is no longer stored; the candidate must record it again")
    requeued = _transition(
        transcription.pk,
        old=transcription.status,
        new=Status.QUEUED,
        where={"gridfs_file_id": file_id, "attempts": transcription.attempts},
        error="",
        processing_started_at=None,
        next_attempt_at=None,
        attempts=0,
    )
    if requeued is None:
        raise RequeueRefused("it changed meanwhile")
    return requeued


def transcription_run(*, transcription_id: int) -> str:
    """Transcribe one queued recording, save the transcript, then delete the audio."""
    if worker.stopping():
        # This worker is shutting down: leave the transcription queued for another one.
        return _defer(transcription_id)
    transcription = _transition(
        transcription_id,
        old=Status.QUEUED,
        new=Status.PROCESSING,
        processing_started_at=timezone.now(),
        next_attempt_at=None,
        attempts=F("attempts") + 1,
    )
    if transcription is None:
        _finish_audio_deletion(transcription_id)
        return "not claimed"
    file_id = transcription.gridfs_file_id
    logger.info(
        "Starting transcription: transcription=%s, attempt=%s, %s",
        transcription.pk,
        transcription.attempts,
        _describe(transcription.metadata),
    )
    try:
        with worker.releasable():
            audio = storage.get_audio(file_id)
            length = decoded_length(io.BytesIO(audio), limit_seconds=settings.MAX_ANSWER_SECONDS)
            if length.over_limit:
                logger.info(
                    "Refused before the engine: transcription=%s, measuring stopped at "
                    "%.3f s of audio, over the %s s limit",
                    transcription.pk,
                    length.seconds,
                    settings.MAX_ANSWER_SECONDS,
                )
                return _fail(transcription, too_long_message())
            started = time.monotonic()
            transcript = get_transcriber().transcribe(
                audio,
                language=transcription.language_hint or None,
                prompt=transcription.prompt,
                content_type=transcription.content_type or "application/octet-stream",
                filename=f"transcription-{transcription.pk}",
            )
            engine_seconds = time.monotonic() - started
    except worker.WorkerStopping:
        return _release(transcription)
    except storage.AudioNotFound:
        return _fail(transcription, NO_AUDIO)
    except UnreadableAudio as exc:
        return _fail(transcription, str(exc))
    except storage.StorageUnavailable as exc:
        return _retry_later(transcription, "The audio store could not be reached.", exc)
    except TranscriptionError as exc:
        # The candidate reads exc.public; the engine's own words (API messages, hosts) are
        # for operators, in the log.
        if exc.permanent:
            logger.warning("Engine refused: transcription=%s: %s", transcription.pk, exc)
            return _fail(transcription, exc.public)
        return _retry_later(transcription, exc.public, exc)
    except Exception:
        logger.exception("Transcription crashed: transcription=%s", transcription.pk)
        return _fail(transcription, UNEXPECTED)

    completed = _transition(
        transcription.pk,
        old=Status.PROCESSING,
        new=Status.COMPLETED,
        where={"gridfs_file_id": file_id},
        transcript=transcript.text,
        language=transcript.language,
        words=[word.as_dict() for word in transcript.words],
        # With engine_seconds, the real-time factor on the operators' dashboard.
        audio_seconds=(
            length.seconds if transcript.audio_seconds is None else transcript.audio_seconds
        ),
        transcribed_at=timezone.now(),
        engine_seconds=engine_seconds,
        error="",
    )
    if completed is None:
        logger.info("Transcription discarded: transcription=%s is gone", transcription.pk)
        return "superseded"
    logger.info(
        "Transcription completed: transcription=%s, language=%s, words=%s",
        transcription.pk,
        transcript.language,
        len(transcript.text.split()),
    )
    _delete_completed_audio(completed)
    return "completed"


def _describe(metadata: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(metadata.items()))


def _finish_audio_deletion(transcription_id: int) -> None:
    """Delete the audio of a completed transcription whose deletion a crash interrupted."""
    completed = Transcription.objects.filter(
        pk=transcription_id, status=Status.COMPLETED, gridfs_file_id__isnull=False
    ).first()
    if completed is not None:
        _delete_completed_audio(completed)


def _delete_completed_audio(transcription: Transcription) -> None:
    """Delete a completed transcription's audio: its transcript is committed already."""
    file_id = transcription.gridfs_file_id
    try:
        storage.delete_audio(file_id)
    except storage.StorageUnavailable as exc:
        # The transcript is committed; cleanup_audio removes the audio of completed ones.
        logger.warning("Audio not deleted, cleanup will: transcription=%s: %s", file_id, exc)
        return
    Transcription.objects.filter(
        pk=transcription.pk, status=Status.COMPLETED, gridfs_file_id=file_id
    ).update(gridfs_file_id=None)
    logger.info("Audio deleted after transcription: transcription=%s", transcription.pk)


def _fail(transcription: Transcription, error: str) -> str:
    """Record why the transcription failed; the audio stays for a manual re-queue."""
    _transition(
        transcription.pk,
        old=Status.PROCESSING,
        new=Status.FAILED,
        where={"gridfs_file_id": transcription.gridfs_file_id},
        error=error,
    )
    logger.warning("Transcription failed: transcription=%s: %s", transcription.pk, error)
    return "failed"


def _retry_later(transcription: Transcription, error: str, cause: Exception) -> str:
    """Queue the transcription again after an exponential, jittered delay, or fail it."""
    logger.warning("Transcription attempt failed: transcription=%s: %s", transcription.pk, cause)
    attempts = transcription.attempts
    if attempts >= settings.TRANSCRIPTION_MAX_ATTEMPTS:
        return _fail(transcription, f"{error} (gave up after {attempts} attempts)")
    delay = settings.TRANSCRIPTION_RETRY_BASE_SECONDS * 2 ** (attempts - 1)
    # Jitter spreads the retries of many answers that failed together (an API outage).
    next_attempt_at = timezone.now() + timedelta(seconds=delay * random.uniform(0.75, 1.25))
    _transition(
        transcription.pk,
        old=Status.PROCESSING,
        new=Status.QUEUED,
        where={"gridfs_file_id": transcription.gridfs_file_id},
        processing_started_at=None,
        next_attempt_at=next_attempt_at,
        error=f"Attempt {attempts} failed, will retry: {error}",
    )
    return "retry scheduled"


def _release(transcription: Transcription) -> str:
    """Hand an interrupted transcription back to the queue; it was not a failed attempt."""
    _transition(
        transcription.pk,
        old=Status.PROCESSING,
        new=Status.QUEUED,
        where={"gridfs_file_id": transcription.gridfs_file_id},
        processing_started_at=None,
        attempts=F("attempts") - 1,
    )
    logger.info("Transcription released by a stopping worker: transcription=%s", transcription.pk)
    return "released"


def _defer(transcription_id: int) -> str:
    with transaction.atomic():
        if Transcription.objects.filter(pk=transcription_id, status=Status.QUEUED).exists():
            _enqueue(transcription_id)
    return "deferred"


def transcription_enqueue_if_queued(*, transcription_id: int) -> bool:
    """Give a queued transcription a job (the reconciler found it without one)."""
    with transaction.atomic():
        queued = (
            Transcription.objects.select_for_update()
            .filter(pk=transcription_id, status=Status.QUEUED)
            .exists()
        )
        if queued:
            _enqueue(transcription_id)
    return queued


def transcription_recover(*, transcription: Transcription) -> Transcription | None:
    """Release a transcription whose worker was lost, or fail it once its attempts are used."""
    # Only the claim the caller saw: a worker that claimed it again since owns it now.
    where = {
        "attempts": transcription.attempts,
        "processing_started_at": transcription.processing_started_at,
    }
    if transcription.attempts >= settings.TRANSCRIPTION_MAX_ATTEMPTS:
        return _transition(
            transcription.pk,
            old=Status.PROCESSING,
            new=Status.FAILED,
            where=where,
            error=(
                f"Transcription did not finish in {transcription.attempts} attempts; "
                "record the answer again."
            ),
        )
    return _transition(
        transcription.pk,
        old=Status.PROCESSING,
        new=Status.QUEUED,
        where=where,
        processing_started_at=None,
    )
