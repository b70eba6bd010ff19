"""Operators' jobs: expire old audio, remove orphans, recover lost transcriptions, schedules."""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from django.conf import settings
from django.db import transaction
from django_q.models import Schedule

from sessions_app.models import Answer
from sessions_app.services import transcription_enqueue

from . import storage

logger = logging.getLogger(__name__)

# An upload writes its chunks, then its files document, then the answer row: anything
# younger than this may be an upload still in flight, not an orphan.
ORPHAN_GRACE = timedelta(minutes=10)
EXPIRED_ERROR = "The audio expired before it was transcribed; record the answer again."


@dataclass
class CleanupReport:
    expired_audio: list[str] = field(default_factory=list)
    expired_answers: int = 0
    orphan_files: list[str] = field(default_factory=list)
    orphan_chunks: int = 0

    def __str__(self):
        return (
            f"deleted {len(self.expired_audio)} audio files of idle answers "
            f"({self.expired_answers} failed answers marked expired), "
            f"{len(self.orphan_files)} orphan files, {self.orphan_chunks} orphan chunks"
        )


def cleanup_audio(*, hours: float = 24, dry_run: bool = False) -> CleanupReport:
    """Delete old audio of idle answers, leftover audio of completed ones, and orphans.

    Never audio whose answer is queued or processing.
    """
    report = CleanupReport()
    db = storage.get_database()
    now = datetime.now(UTC)
    referenced = dict(
        Answer.objects.filter(gridfs_file_id__isnull=False).values_list(
            "gridfs_file_id", "transcription_status"
        )
    )
    busy = {Answer.Status.QUEUED, Answer.Status.PROCESSING}
    cutoff = now - timedelta(hours=hours)
    with storage.mongo_errors():
        files = list(db["fs.files"].find({}, {"_id": 1, "metadata.upload_date": 1}))
        file_ids = {doc["_id"] for doc in files}
        chunk_owners = db["fs.chunks"].distinct("files_id")
    for doc in files:
        file_id = str(doc["_id"])
        uploaded = (doc.get("metadata") or {}).get("upload_date") or doc["_id"].generation_time
        if file_id not in referenced:
            if uploaded < now - ORPHAN_GRACE:
                report.orphan_files.append(file_id)
        elif referenced[file_id] == Answer.Status.COMPLETED or (
            referenced[file_id] not in busy and uploaded < cutoff
        ):
            # A completed answer's audio outlived its transcript only because its deletion
            # failed (MongoDB was down): it goes whatever its age.
            report.expired_audio.append(file_id)
    orphan_owners = [
        owner
        for owner in chunk_owners
        if owner not in file_ids
        and isinstance(owner, ObjectId)
        and owner.generation_time < now - ORPHAN_GRACE
    ]
    with storage.mongo_errors():
        report.orphan_chunks = db["fs.chunks"].count_documents({"files_id": {"$in": orphan_owners}})
    if dry_run:
        report.expired_answers = Answer.objects.filter(
            gridfs_file_id__in=report.expired_audio, transcription_status=Answer.Status.FAILED
        ).count()
        return report

    for file_id in report.expired_audio:
        with transaction.atomic():
            # Re-checked under lock: a re-queue or re-upload may have made it busy again.
            answer = (
                Answer.objects.select_for_update()
                .filter(gridfs_file_id=file_id)
                .exclude(transcription_status__in=busy)
                .first()
            )
            if answer is None:
                continue
            storage.delete_audio(file_id)
            answer.gridfs_file_id = None
            if answer.transcription_status == Answer.Status.FAILED:
                answer.transcription_error = EXPIRED_ERROR
                report.expired_answers += 1
            answer.save(update_fields=["gridfs_file_id", "transcription_error", "updated_at"])
    for file_id in report.orphan_files:
        storage.delete_audio(file_id)
    with storage.mongo_errors():
        db["fs.chunks"].delete_many({"files_id": {"$in": orphan_owners}})
    logger.info("Audio cleanup: %s", report)
    return report


@dataclass
class RecoveryReport:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def __str__(self):
        return (
            f"re-queued {len(self.requeued)} stuck transcriptions, "
            f"failed {len(self.failed)} past {settings.TRANSCRIPTION_MAX_ATTEMPTS} attempts"
        )


def recover_stuck(*, dry_run: bool = False) -> RecoveryReport:
    """Re-queue answers whose worker was lost mid-transcription; fail them past max attempts."""
    report = RecoveryReport()
    max_attempts = settings.TRANSCRIPTION_MAX_ATTEMPTS
    for answer in Answer.objects.stuck():
        exhausted = answer.attempts >= max_attempts
        (report.failed if exhausted else report.requeued).append(answer.pk)
        if dry_run:
            continue
        stuck = Answer.objects.stuck().filter(pk=answer.pk, attempts=answer.attempts)
        if exhausted:
            stuck.update(
                transcription_status=Answer.Status.FAILED,
                transcription_error=(
                    f"Transcription did not finish in {answer.attempts} attempts (the worker "
                    "stopped or timed out each time); re-queue it by hand to try again."
                ),
            )
        elif stuck.update(transcription_status=Answer.Status.QUEUED, processing_started_at=None):
            transcription_enqueue(answer_id=answer.pk)
    if report.requeued or report.failed:
        logger.warning("Stuck transcriptions: %s", report)
    return report


def cleanup_audio_job() -> str:
    """Run the hourly audio cleanup (a Django-Q schedule)."""
    return str(cleanup_audio(hours=settings.AUDIO_RETENTION_HOURS))


def recover_stuck_job() -> str:
    """Run the stuck-transcription recovery (a Django-Q schedule)."""
    return str(recover_stuck())


SCHEDULES = {
    "Clean up old and orphan audio": {
        "func": "transcription.maintenance.cleanup_audio_job",
        "schedule_type": Schedule.HOURLY,
    },
    "Recover stuck transcriptions": {
        "func": "transcription.maintenance.recover_stuck_job",
        "schedule_type": Schedule.MINUTES,
        "minutes": 1,
    },
}


def schedules_ensure(*, dry_run: bool = False) -> list[tuple[str, bool]]:
    """Create each schedule once, by name; return (name, created) pairs."""
    results = []
    for name, fields in SCHEDULES.items():
        if dry_run:
            results.append((name, not Schedule.objects.filter(name=name).exists()))
            continue
        _, created = Schedule.objects.update_or_create(name=name, defaults=fields | {"repeats": -1})
        results.append((name, created))
    return results
