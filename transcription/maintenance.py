"""Operators' jobs: the reconciler that leaves no transcription without its job, audio cleanup,
the pruning of the queue's results, and the schedules that run them."""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Success, Task
from django_q.signing import SignedPackage

from . import services, storage
from .models import Transcription
from .signals import reconciled

logger = logging.getLogger(__name__)
Status = Transcription.Status

# An upload writes its chunks, then its files document, then its row: anything younger than
# this may be an upload still in flight, not an orphan.
ORPHAN_GRACE = timedelta(minutes=10)
# A queued row commits together with its job, so one without a job is stranded at once;
# only a retry that has just come due waits this long for the scheduler's own enqueue.
DUE_GRACE = timedelta(seconds=60)
EXPIRED_ERROR = "The recording expired before it was transcribed; record the answer again."


@dataclass
class ReconcileReport:
    enqueued: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def __str__(self):
        return (
            f"enqueued {len(self.enqueued)} queued transcriptions without a job, "
            f"released {len(self.released)} whose worker was lost, "
            f"failed {len(self.failed)} past {settings.TRANSCRIPTION_MAX_ATTEMPTS} attempts"
        )


def transcriptions_with_a_job() -> set[int]:
    """Return the ids whose transcription job waits in the queue or runs now."""
    ids = set()
    for task in OrmQ.objects.all():
        try:
            package = SignedPackage.loads(task.payload)
        except Exception:  # noqa: BLE001 - a task signed with another key is not ours
            continue
        if package.get("func") == services.JOB and package.get("args"):
            ids.add(package["args"][0])
    return ids


def reconcile(*, dry_run: bool = False) -> ReconcileReport:
    """Enqueue each due queued transcription that has no job; release or fail lost ones."""
    report = ReconcileReport()
    due = timezone.now() - DUE_GRACE
    with_a_job = transcriptions_with_a_job()
    waiting = (
        Transcription.objects.filter(status=Status.QUEUED)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=due))
        .exclude(pk__in=with_a_job)
        .values_list("pk", flat=True)
    )
    for transcription_id in waiting:
        report.enqueued.append(transcription_id)
        if not dry_run:
            services.transcription_enqueue_if_queued(transcription_id=transcription_id)
    for transcription in Transcription.objects.stuck():
        exhausted = transcription.attempts >= settings.TRANSCRIPTION_MAX_ATTEMPTS
        (report.failed if exhausted else report.released).append(transcription.pk)
        if not dry_run:
            services.transcription_recover(transcription=transcription)
    if report.enqueued or report.released or report.failed:
        logger.warning("Reconciler: %s", report)
    if not dry_run:
        reconciled.send(sender=ReconcileReport, report=report)
    return report


@dataclass
class CleanupReport:
    expired_audio: list[str] = field(default_factory=list)
    expired_transcriptions: int = 0
    orphan_files: list[str] = field(default_factory=list)
    orphan_chunks: int = 0

    def __str__(self):
        return (
            f"deleted {len(self.expired_audio)} audio files of idle transcriptions "
            f"({self.expired_transcriptions} failed ones marked expired), "
            f"{len(self.orphan_files)} orphan files, {self.orphan_chunks} orphan chunks"
        )


def cleanup_audio(*, hours: float = 24, dry_run: bool = False) -> CleanupReport:
    """Delete old audio of failed transcriptions, leftover audio of completed ones, orphans.

    Never audio whose transcription is queued or processing.
    """
    report = CleanupReport()
    db = storage.get_database()
    now = datetime.now(UTC)
    referenced = dict(
        Transcription.objects.filter(gridfs_file_id__isnull=False).values_list(
            "gridfs_file_id", "status"
        )
    )
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
        elif referenced[file_id] == Status.COMPLETED or (
            referenced[file_id] == Status.FAILED and uploaded < cutoff
        ):
            # A completed transcription's audio outlived its transcript only because its
            # deletion failed (MongoDB was down): it goes whatever its age.
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
        report.expired_transcriptions = Transcription.objects.filter(
            gridfs_file_id__in=report.expired_audio, status=Status.FAILED
        ).count()
        return report

    for file_id in report.expired_audio:
        with transaction.atomic():
            # Re-checked under lock: a re-queue may have made it pending again.
            transcription = (
                Transcription.objects.select_for_update()
                .filter(gridfs_file_id=file_id, status__in=[Status.COMPLETED, Status.FAILED])
                .first()
            )
            if transcription is None:
                continue
            storage.delete_audio(file_id)
            transcription.gridfs_file_id = None
            if transcription.status == Status.FAILED:
                transcription.error = EXPIRED_ERROR
                report.expired_transcriptions += 1
            transcription.save(update_fields=["gridfs_file_id", "error", "updated_at"])
    for file_id in report.orphan_files:
        storage.delete_audio(file_id)
    with storage.mongo_errors():
        db["fs.chunks"].delete_many({"files_id": {"$in": orphan_owners}})
    logger.info("Audio cleanup: %s", report)
    return report


def prune_task_results(*, keep: int) -> int:
    """Delete successful queue results beyond the newest ``keep``; return how many.

    Failed ones stay for staff to read (the admin's Failed tasks) until they are deleted.
    """
    # Everything from the newest one past ``keep`` back: one DELETE, however many there are.
    cutoff = Success.objects.order_by("-stopped").values_list("stopped", flat=True)[keep:].first()
    if cutoff is None:
        return 0
    deleted, _ = Task.objects.filter(success=True, stopped__lte=cutoff).delete()
    if deleted:
        logger.info("Task results pruned: %s successful ones beyond the newest %s", deleted, keep)
    return deleted


SCHEDULES = {
    "Clean up old and orphan audio": {
        "func": "transcription.tasks.cleanup_audio",
        "schedule_type": Schedule.HOURLY,
    },
    "Prune successful task results": {
        "func": "transcription.tasks.prune_task_results",
        "schedule_type": Schedule.HOURLY,
    },
    "Reconcile transcriptions with their jobs": {
        "func": "transcription.tasks.reconcile",
        "schedule_type": Schedule.MINUTES,
        "minutes": 1,
    },
}
# Names that earlier versions used; removed so that no schedule calls a function that is gone.
RETIRED_SCHEDULES = ["Recover stuck transcriptions"]


def all_schedules() -> dict[str, dict]:
    """Return this app's schedules and those other apps declare as ``schedules`` on their
    AppConfig (a registry: this app imports none of them)."""
    schedules = dict(SCHEDULES)
    for config in apps.get_app_configs():
        schedules |= getattr(config, "schedules", {})
    return schedules


def schedules_ensure(*, dry_run: bool = False) -> list[tuple[str, bool]]:
    """Create each schedule once, by name; return (name, created) pairs."""
    results = []
    for name, fields in all_schedules().items():
        if dry_run:
            results.append((name, not Schedule.objects.filter(name=name).exists()))
            continue
        _, created = Schedule.objects.update_or_create(name=name, defaults=fields | {"repeats": -1})
        results.append((name, created))
    if not dry_run:
        Schedule.objects.filter(name__in=RETIRED_SCHEDULES).delete()
    return results
