"""The transcription job, run from the real ORM broker, against the embedded MongoDB server."""

import pytest
from bson import ObjectId
from django.db import transaction

from sessions_app.models import Answer
from sessions_app.services import answer_submit
from tests.support import run_queued_jobs
from transcription.backends import TranscriptionError
from transcription.models import Transcription
from transcription.services import _enqueue
from transcription.tasks import transcribe

pytestmark = pytest.mark.django_db


def stored(gridfs, file_id) -> tuple[int, int]:
    """Return how many files documents and chunks GridFS holds for the file."""
    oid = ObjectId(file_id)
    return (
        gridfs["fs.files"].count_documents({"_id": oid}),
        gridfs["fs.chunks"].count_documents({"files_id": oid}),
    )


def first_question(interview):
    return interview.ordered_questions()[0]


def test_upload_is_queued_with_audio_in_gridfs_then_completed_without_it(
    api_client, interview, upload, gridfs, scripted_engine, spoken
):
    question = first_question(interview)
    audio = scripted_engine.say(spoken("I would add an index"), "I would add an index.")

    response = upload(interview.pk, question.pk, audio)
    file_id = response.json()["file_id"]
    status_url = f"/api/transcription-status/{interview.pk}/{question.pk}"

    assert api_client.get(status_url).json()["status"] == "queued"
    files, chunks = stored(gridfs, file_id)
    assert files == 1
    assert chunks >= 1
    assert gridfs["fs.files"].find_one({"_id": ObjectId(file_id)})["metadata"] | {} == {
        "session_id": interview.pk,
        "question_id": question.pk,
        "user_id": interview.user_id,
        "upload_date": gridfs["fs.files"].find_one()["metadata"]["upload_date"],
        "content_type": "audio/wav",
    }

    assert run_queued_jobs() == 1

    body = api_client.get(status_url).json()
    assert body["status"] == "completed"
    assert body["transcript"] == "I would add an index."
    assert body["transcribed_at"]
    assert stored(gridfs, file_id) == (0, 0)
    answer = Answer.objects.get()
    assert answer.transcription.gridfs_file_id is None
    assert answer.score is not None
    assert answer.feedback
    assert answer.model_answer == question.model_answer


def test_duplicate_delivery_transcribes_once(interview, upload, gridfs, scripted_engine, spoken):
    question = first_question(interview)
    upload(interview.pk, question.pk, scripted_engine.say(spoken("twice"), "twice"))
    answer = Answer.objects.get()
    with transaction.atomic():
        _enqueue(answer.transcription_id)  # the broker hands the job out a second time

    assert run_queued_jobs() == 2

    assert len(scripted_engine.calls) == 1
    answer.refresh_from_db()
    assert answer.transcription.status == Answer.Status.COMPLETED
    assert answer.transcription.attempts == 1


def test_second_run_of_a_finished_job_changes_nothing(
    interview, upload, gridfs, scripted_engine, spoken
):
    question = first_question(interview)
    upload(interview.pk, question.pk, scripted_engine.say(spoken("once"), "once"))
    answer = Answer.objects.get()
    assert transcribe(answer.transcription_id) == "completed"

    assert transcribe(answer.transcription_id) == "not claimed"

    assert len(scripted_engine.calls) == 1
    answer.refresh_from_db()
    assert answer.transcription.transcript == "once"


def test_reupload_replaces_the_audio_and_restarts_transcription(
    api_client, interview, upload, gridfs, scripted_engine, spoken
):
    question = first_question(interview)
    first = upload(interview.pk, question.pk, scripted_engine.say(spoken("first"), "first"))
    run_queued_jobs()
    second_audio = scripted_engine.say(spoken("second take"), "second take")
    waiting = upload(interview.pk, question.pk, spoken("never transcribed"))
    assert stored(gridfs, waiting.json()["file_id"])[0] == 1

    second = upload(interview.pk, question.pk, second_audio)

    assert second.status_code == 202
    assert stored(gridfs, first.json()["file_id"]) == (0, 0)
    assert stored(gridfs, waiting.json()["file_id"]) == (0, 0)
    assert stored(gridfs, second.json()["file_id"])[0] == 1
    answer = Answer.objects.get()
    assert answer.transcription.status == Answer.Status.QUEUED
    assert answer.transcription.transcript == ""
    assert answer.score is None
    run_queued_jobs()
    answer.refresh_from_db()
    assert answer.transcription.transcript == "second take"
    assert gridfs["fs.files"].count_documents({}) == 0


def test_reupload_while_transcribing_discards_the_stale_transcript(
    interview, gridfs, scripted_engine, spoken, upload, django_capture_on_commit_callbacks
):
    question = first_question(interview)
    new_audio = scripted_engine.say(spoken("the new take"), "the new take")

    def rerecord_midway(audio):
        answer_submit(
            session=interview, question=question, audio=new_audio, content_type="audio/wav"
        )
        return "the old take"

    old_audio = scripted_engine.say(spoken("the old take"), rerecord_midway)
    upload(interview.pk, question.pk, old_audio)
    answer = Answer.objects.get()
    old_transcription = answer.transcription_id

    with django_capture_on_commit_callbacks(execute=True):
        assert transcribe(old_transcription) == "superseded"

    answer.refresh_from_db()
    assert not Transcription.objects.filter(pk=old_transcription).exists()
    assert answer.transcription.status == Answer.Status.QUEUED
    assert answer.transcription.transcript == ""
    assert transcribe(answer.transcription_id) == "completed"
    answer.refresh_from_db()
    assert answer.transcription.transcript == "the new take"
    assert gridfs["fs.files"].count_documents({}) == 0


def test_engine_error_fails_the_answer_and_keeps_the_audio(
    interview, upload, gridfs, scripted_engine, spoken
):
    question = first_question(interview)
    audio = scripted_engine.say(
        spoken("broken"), TranscriptionError("Invalid file format.", permanent=True)
    )
    file_id = upload(interview.pk, question.pk, audio).json()["file_id"]

    run_queued_jobs()

    answer = Answer.objects.get()
    assert answer.transcription.status == Answer.Status.FAILED
    assert answer.transcription.error == (
        "This recording could not be transcribed; record the answer again."
    )
    assert answer.transcription.gridfs_file_id == file_id
    assert stored(gridfs, file_id)[0] == 1


def test_missing_audio_fails_with_a_clear_error(interview, upload, gridfs, scripted_engine, spoken):
    question = first_question(interview)
    file_id = upload(interview.pk, question.pk, spoken("gone")).json()["file_id"]
    gridfs["fs.files"].delete_many({})
    gridfs["fs.chunks"].delete_many({})

    run_queued_jobs()

    answer = Answer.objects.get()
    assert answer.transcription.status == Answer.Status.FAILED
    assert "no longer stored" in answer.transcription.error
    assert scripted_engine.calls == []
    assert answer.transcription.gridfs_file_id == file_id


def test_rerun_after_a_crash_between_commit_and_delete_removes_the_audio(
    interview, upload, gridfs, scripted_engine, spoken
):
    question = first_question(interview)
    file_id = upload(interview.pk, question.pk, spoken("crash")).json()["file_id"]
    # What a worker killed right after committing the transcript leaves behind.
    Transcription.objects.update(status=Transcription.Status.COMPLETED, transcript="crash")

    assert transcribe(Answer.objects.get().transcription_id) == "not claimed"

    assert stored(gridfs, file_id) == (0, 0)
    assert Answer.objects.get().transcription.gridfs_file_id is None
    assert scripted_engine.calls == []
