"""Operators' commands: audio cleanup, stuck-job recovery, re-queue from the shell, schedules."""

import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import gridfs as gridfs_lib
import pytest
from bson import ObjectId
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import Failure, OrmQ, Schedule, Success, Task

from sessions_app.models import Answer
from sessions_app.services import session_create
from tests.support import run_queued_jobs
from transcription.maintenance import EXPIRED_ERROR
from transcription.models import Transcription

pytestmark = pytest.mark.django_db


def command(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def age_audio(gridfs, file_id: str, hours: float) -> None:
    """Make stored audio look as if it was uploaded ``hours`` ago."""
    gridfs["fs.files"].update_one(
        {"_id": ObjectId(file_id)},
        {"$set": {"metadata.upload_date": datetime.now(UTC) - timedelta(hours=hours)}},
    )


def exists(gridfs, file_id) -> bool:
    return gridfs["fs.files"].count_documents({"_id": ObjectId(file_id)}) == 1


def chunks_of(gridfs, file_id) -> int:
    return gridfs["fs.chunks"].count_documents({"files_id": ObjectId(file_id)})


@pytest.fixture
def answers(interview, upload, gridfs, scripted_engine, spoken, user, questions):
    """Audio in every state cleanup must tell apart, most of it uploaded 30 hours ago."""
    more = session_create(user=user, question_count=4)
    q = list(interview.ordered_questions()) + list(more.ordered_questions())
    files = {}
    failing = scripted_engine.say(spoken("fails"), RuntimeError("engine crashed"))
    files["failed"] = upload(interview.pk, q[0].pk, failing).json()["file_id"]
    # Audio of an idle answer that is younger than the cutoff.
    files["recent_failed"] = upload(more.pk, q[4].pk, failing).json()["file_id"]
    run_queued_jobs()
    files["queued"] = upload(interview.pk, q[1].pk, spoken("queued")).json()["file_id"]
    files["processing"] = upload(interview.pk, q[2].pk, spoken("processing")).json()["file_id"]
    Transcription.objects.filter(gridfs_file_id=files["processing"]).update(
        status=Transcription.Status.PROCESSING, processing_started_at=timezone.now()
    )
    # A completed answer whose audio survived a crash between commit and delete.
    files["completed"] = upload(more.pk, q[3].pk, spoken("completed")).json()["file_id"]
    Transcription.objects.filter(gridfs_file_id=files["completed"]).update(
        status=Transcription.Status.COMPLETED, transcript="completed"
    )
    files["recent_completed"] = upload(more.pk, q[6].pk, spoken("done")).json()["file_id"]
    Transcription.objects.filter(gridfs_file_id=files["recent_completed"]).update(
        status=Transcription.Status.COMPLETED, transcript="done"
    )
    # An orphan file (no answer refers to it) and orphan chunks (no files document).
    bucket = gridfs_lib.GridFSBucket(gridfs)
    files["orphan"] = str(
        bucket.upload_from_stream(
            "orphan", b"x" * 2000, metadata={"upload_date": datetime.now(UTC)}
        )
    )
    old_id = ObjectId.from_datetime(datetime.now(UTC) - timedelta(hours=2))
    gridfs["fs.chunks"].insert_many(
        [{"files_id": old_id, "n": n, "data": b"chunk"} for n in range(3)]
    )
    for name, file_id in files.items():
        if not name.startswith("recent_"):
            age_audio(gridfs, file_id, hours=30)
    # A young upload still in flight: chunks written, files document not yet.
    files["in_flight_chunks"] = str(ObjectId())
    gridfs["fs.chunks"].insert_one({"files_id": ObjectId(files["in_flight_chunks"]), "n": 0})
    return files


def test_cleanup_audio_deletes_only_old_idle_audio_and_orphans(answers, gridfs):
    dry = command("cleanup_audio", "--hours", "24", "--dry-run")
    assert exists(gridfs, answers["failed"])  # a dry run deletes nothing

    output = command("cleanup_audio", "--hours", "24")

    expected = (
        "deleted 3 audio files of idle transcriptions (1 failed ones marked expired), "
        "1 orphan files, 3 orphan chunks"
    )
    assert f"Cleanup {expected}" in output
    assert f"would have {expected}" in dry
    for gone in ["failed", "completed", "recent_completed", "orphan"]:
        assert not exists(gridfs, answers[gone]), gone
        assert chunks_of(gridfs, answers[gone]) == 0, gone
    for kept in ["queued", "processing", "recent_failed"]:
        assert exists(gridfs, answers[kept]), kept
        assert chunks_of(gridfs, answers[kept]) >= 1, kept
    assert chunks_of(gridfs, answers["in_flight_chunks"]) == 1
    expired = Answer.objects.get(transcription__error=EXPIRED_ERROR)
    assert expired.transcription.status == Answer.Status.FAILED
    assert expired.transcription.gridfs_file_id is None
    assert Transcription.objects.get(transcript="completed").gridfs_file_id is None


def make_stuck(answer: Answer, *, attempts: int) -> None:
    """Leave the answer as a worker killed mid-transcription leaves it."""
    long_ago = timezone.now() - timedelta(
        seconds=settings.Q_CLUSTER["timeout"] + settings.STUCK_TRANSCRIPTION_MARGIN_SECONDS + 5
    )
    Transcription.objects.filter(pk=answer.transcription_id).update(
        status=Transcription.Status.PROCESSING,
        processing_started_at=long_ago,
        attempts=attempts,
    )


def test_stuck_answer_is_requeued_and_completes(interview, upload, gridfs, scripted_engine, spoken):
    question = interview.ordered_questions()[0]
    upload(interview.pk, question.pk, scripted_engine.say(spoken("stuck"), "stuck no more"))
    answer = Answer.objects.get()
    OrmQ.objects.all().delete()  # the job went down with its worker
    make_stuck(answer, attempts=1)
    fresh = interview.ordered_questions()[1]
    upload(interview.pk, fresh.pk, spoken("still running"))
    Transcription.objects.filter(answer__question=fresh).update(
        status=Transcription.Status.PROCESSING, processing_started_at=timezone.now()
    )

    output = command("reconcile_transcriptions")

    assert "released 1 whose worker was lost, failed 0" in output
    assert f"released transcription {answer.transcription_id}" in output
    answer.refresh_from_db()
    assert answer.transcription.status == Answer.Status.QUEUED
    run_queued_jobs()
    answer.refresh_from_db()
    assert answer.transcription.status == Answer.Status.COMPLETED
    assert answer.transcription.transcript == "stuck no more"
    assert answer.transcription.attempts == 2
    assert Answer.objects.get(question=fresh).transcription.status == Answer.Status.PROCESSING


def test_stuck_answer_past_max_attempts_ends_failed_with_an_error(
    interview, upload, gridfs, spoken
):
    question = interview.ordered_questions()[0]
    upload(interview.pk, question.pk, spoken("never finishes"))
    answer = Answer.objects.get()
    make_stuck(answer, attempts=settings.TRANSCRIPTION_MAX_ATTEMPTS)

    assert "released 0 whose worker was lost, failed 1" in command(
        "reconcile_transcriptions", "--dry-run"
    )
    output = command("reconcile_transcriptions")

    assert "failed 1" in output
    answer.refresh_from_db()
    assert answer.transcription.status == Answer.Status.FAILED
    assert re.search(r"did not finish in \d+ attempts", answer.transcription.error)
    assert answer.transcription.gridfs_file_id  # kept for a re-queue by hand


def test_requeue_command_requeues_failed_answers_of_a_session(
    interview, upload, gridfs, scripted_engine, spoken, django_capture_on_commit_callbacks
):
    question = interview.ordered_questions()[0]
    audio = scripted_engine.say(spoken("flaky"), RuntimeError("engine crashed"))
    upload(interview.pk, question.pk, audio)
    run_queued_jobs()
    scripted_engine.say(audio, "flaky but fine")

    assert "Would re-queue 1" in command(
        "requeue_transcriptions", "--session", str(interview.pk), "--dry-run"
    )
    assert "Re-queued 0" in command("requeue_transcriptions", "--older-than", "60")
    with django_capture_on_commit_callbacks(execute=True):
        output = command("requeue_transcriptions", "--session", str(interview.pk))

    assert "Re-queued 1 transcriptions; 0 could not be re-queued" in output
    run_queued_jobs()
    assert Answer.objects.get().transcription.transcript == "flaky but fine"


def test_schedules_exist_after_setup_and_are_not_duplicated(gridfs):
    first = command("setup_schedules")
    second = command("setup_schedules")

    schedules = {s.name: s for s in Schedule.objects.all()}
    assert set(schedules) == {
        "Clean up old and orphan audio",
        "Prune successful task results",
        "Reconcile transcriptions with their jobs",
        "Delete sessions past TRANSCRIPT_RETENTION_DAYS",
        "Send due webhook deliveries",
    }
    cleanup = schedules["Clean up old and orphan audio"]
    recovery = schedules["Reconcile transcriptions with their jobs"]
    assert cleanup.schedule_type == Schedule.HOURLY
    assert cleanup.func == "transcription.tasks.cleanup_audio"
    assert (recovery.schedule_type, recovery.minutes) == (Schedule.MINUTES, 1)
    assert recovery.func == "transcription.tasks.reconcile"
    assert first.count(": created") == 5
    assert second.count(": up to date") == 5
    # What the cluster runs on schedule does the same as the commands.
    assert import_string(cleanup.func)().startswith("deleted 0 audio files")
    prune = schedules["Prune successful task results"]
    assert prune.schedule_type == Schedule.HOURLY
    assert import_string(prune.func)() == "deleted 0"
    assert import_string(recovery.func)() == (
        "enqueued 0 queued transcriptions without a job, released 0 whose worker was lost, "
        "failed 0 past 5 attempts"
    )


def test_task_results_are_pruned_to_the_newest_successes_and_failures_stay(settings):
    """django-q2 prunes nothing itself (save_limit 0: its pruning held the write lock for
    every job); the hourly job keeps the newest Q_SUCCESS_KEEP successes."""
    settings.Q_SUCCESS_KEEP = 3
    start = timezone.now() - timedelta(hours=1)
    for n in range(6):
        for success in (True, False):
            stopped = start + timedelta(minutes=n)
            Task.objects.create(
                id=f"{success}-{n}",
                name=f"task-{success}-{n}",
                func="transcription.tasks.transcribe",
                started=stopped,
                stopped=stopped,
                success=success,
            )
    assert import_string("transcription.tasks.prune_task_results")() == "deleted 3"
    assert sorted(Success.objects.values_list("name", flat=True)) == [
        "task-True-3",
        "task-True-4",
        "task-True-5",
    ]
    assert Failure.objects.count() == 6
    assert import_string("transcription.tasks.prune_task_results")() == "deleted 0"
