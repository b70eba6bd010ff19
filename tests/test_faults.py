"""Faults never lose an answer the API accepted: MongoDB down, database errors, API outages,
a killed worker, a crash between saving the transcript and deleting the audio."""

from datetime import timedelta

import pytest
from bson import ObjectId
from django.core.management import call_command
from django.db import OperationalError, connection
from django.utils import timezone
from django_q.models import Schedule
from django_q.scheduler import scheduler

from sessions_app.models import Answer
from tests.openai_server import (  # noqa: F401
    TRANSCRIPTIONS,
    error_body,
    openai_server_fixture,
    openai_settings_fixture,
)
from tests.support import (
    EmbeddedMongo,
    run_queued_jobs,
    stored_state,
)
from transcription import storage
from transcription.models import Transcription

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_mongo(settings, tmp_path, mongo_uri):
    """A MongoDB server process of this test's own, which the test may stop and restart."""
    mongo = EmbeddedMongo(tmp_path).start()
    settings.MONGODB_URI = mongo.uri
    settings.MONGODB_TIMEOUT_MS = 500
    yield mongo
    mongo.stop()


def retry_when_due() -> int:
    """Run the scheduled retries as the cluster's scheduler does once their time has come."""
    Schedule.objects.update(next_run=timezone.now() - timedelta(seconds=1))
    scheduler()
    return run_queued_jobs()


def first_question(interview):
    return interview.ordered_questions()[0]


def test_upload_while_mongodb_is_down_is_503_and_records_nothing(
    own_mongo, interview, upload, spoken
):
    own_mongo.stop()

    response = upload(interview.pk, first_question(interview).pk, spoken("lost?"))

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert "nothing was saved" in response.json()["error"]["message"]
    assert not Answer.objects.exists()
    own_mongo.start()


def fail_answer_inserts():
    """Make the database refuse new answers, as a full disk or a lost primary would."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER refuse_answers BEFORE INSERT ON sessions_app_answer "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION refuse_answers() RETURNS trigger AS "
                "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_answers BEFORE INSERT ON sessions_app_answer "
                "FOR EACH ROW EXECUTE FUNCTION refuse_answers()"
            )


def test_database_refusing_the_row_is_a_logged_500_and_removes_the_audio(
    api_client, interview, upload, gridfs, spoken, caplog
):
    api_client.raise_request_exception = False
    before = stored_state(gridfs)
    fail_answer_inserts()

    response = upload(interview.pk, first_question(interview).pk, spoken("no row for me"))

    # Not an outage but an error of ours: never reported as "try again shortly".
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"
    assert "disk full" in caplog.text
    assert stored_state(gridfs) == before  # no orphan audio left in GridFS


def test_unreachable_database_after_the_gridfs_write_is_503_and_removes_the_audio(
    interview, upload, gridfs, spoken, monkeypatch
):
    before = stored_state(gridfs)

    def connection_lost(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(Transcription.objects, "create", connection_lost)

    response = upload(interview.pk, first_question(interview).pk, spoken("no row for me"))

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert stored_state(gridfs) == before


@pytest.mark.django_db(transaction=True)  # django-q's scheduler closes connections
def test_mongodb_down_during_the_job_retries_later_without_losing_the_audio(
    own_mongo, api_client, interview, upload, scripted_engine, spoken
):
    question = first_question(interview)
    audio = scripted_engine.say(spoken("patience"), "patience")
    file_id = upload(interview.pk, question.pk, audio).json()["file_id"]
    own_mongo.stop()

    run_queued_jobs()

    answer = Answer.objects.get()
    assert answer.transcription.status == Answer.Status.QUEUED
    assert "could not be reached" in answer.transcription.error
    assert answer.transcription.next_attempt_at > timezone.now()
    assert answer.transcription.gridfs_file_id == file_id
    status = api_client.get(f"/api/transcription-status/{interview.pk}/{question.pk}").json()
    assert status["next_attempt_at"]

    own_mongo.start()
    assert retry_when_due() == 1

    answer.refresh_from_db()
    assert answer.transcription.status == Answer.Status.COMPLETED
    assert answer.transcription.transcript == "patience"
    assert answer.transcription.attempts == 2
    assert answer.transcription.next_attempt_at is None


@pytest.fixture
def openai_engine(settings, openai_settings):
    settings.TRANSCRIBER = "openai"
    settings.TRANSCRIPTION_MAX_ATTEMPTS = 4
    return openai_settings


@pytest.mark.django_db(transaction=True)  # django-q's scheduler closes connections
def test_transient_api_errors_back_off_exponentially_then_complete(
    openai_engine, interview, upload, gridfs, spoken
):
    openai_engine.script(429, error_body("Rate limit reached", "rate_limit_error"))
    openai_engine.script(503, error_body("The server is overloaded", "server_error"))
    upload(interview.pk, first_question(interview).pk, spoken("try again"))

    run_queued_jobs()
    answer = Answer.objects.get()
    first_delay = (answer.transcription.next_attempt_at - timezone.now()).total_seconds()
    assert answer.transcription.status == Answer.Status.QUEUED
    # The candidate is told what happens next, never the API's own words.
    assert "busy; it will be tried again" in answer.transcription.error
    assert "Rate limit" not in answer.transcription.error
    retry_when_due()
    answer.refresh_from_db()
    second_delay = (answer.transcription.next_attempt_at - timezone.now()).total_seconds()
    assert "busy; it will be tried again" in answer.transcription.error
    assert "overloaded" not in answer.transcription.error

    # 30 s then 60 s, each within the ±25% jitter.
    assert 30 * 0.75 - 1 <= first_delay <= 30 * 1.25
    assert 60 * 0.75 - 1 <= second_delay <= 60 * 1.25
    assert retry_when_due() == 1
    answer.refresh_from_db()
    assert answer.transcription.status == Answer.Status.COMPLETED
    assert answer.transcription.attempts == 3
    assert openai_engine.count(TRANSCRIPTIONS) == 3
    assert gridfs["fs.files"].count_documents({}) == 0


@pytest.mark.django_db(transaction=True)  # django-q's scheduler closes connections
def test_timeouts_and_refused_connections_are_retried_until_the_attempts_run_out(
    settings, openai_engine, interview, upload, gridfs, spoken
):
    settings.OPENAI_TIMEOUT_SECONDS = 1
    openai_engine.latency = 3
    file_id = upload(interview.pk, first_question(interview).pk, spoken("slow")).json()["file_id"]

    run_queued_jobs()  # attempt 1 times out
    assert "could not be reached" in Answer.objects.get().transcription.error
    openai_engine.stop()
    for _ in range(settings.TRANSCRIPTION_MAX_ATTEMPTS - 1):
        retry_when_due()  # attempts 2 to 4: connection refused

    answer = Answer.objects.get()
    assert answer.transcription.status == Answer.Status.FAILED
    assert "gave up after 4 attempts" in answer.transcription.error
    assert answer.transcription.next_attempt_at is None
    assert not Schedule.objects.exists()
    assert gridfs["fs.files"].count_documents({"_id": ObjectId(file_id)}) == 1


def test_permanent_api_error_fails_at_once_and_keeps_the_audio(
    openai_engine, interview, upload, gridfs, spoken
):
    openai_engine.script(400, error_body("Invalid file format. Supported formats: [...]"))
    file_id = upload(interview.pk, first_question(interview).pk, spoken("bad")).json()["file_id"]

    run_queued_jobs()

    answer = Answer.objects.get()
    assert answer.transcription.status == Answer.Status.FAILED
    # The API's message is for operators (the log); the candidate learns what to do.
    assert answer.transcription.error == (
        "This recording could not be transcribed; record the answer again."
    )
    assert answer.transcription.attempts == 1
    assert not Schedule.objects.exists()
    assert gridfs["fs.files"].count_documents({"_id": ObjectId(file_id)}) == 1


def test_crash_between_saving_the_transcript_and_deleting_the_audio_loses_nothing(
    own_mongo, api_client, interview, upload, scripted_engine, spoken
):
    question = first_question(interview)

    def mongodb_dies_midway(audio):
        own_mongo.stop()
        return "saved first"

    file_id = upload(
        interview.pk, question.pk, scripted_engine.say(spoken("midway"), mongodb_dies_midway)
    ).json()["file_id"]

    assert run_queued_jobs() == 1

    answer = Answer.objects.get()
    assert answer.transcription.status == Answer.Status.COMPLETED
    assert answer.transcription.transcript == "saved first"
    assert answer.transcription.gridfs_file_id == file_id  # not deleted: MongoDB was down
    own_mongo.start()
    db = storage.get_database()
    assert db["fs.files"].count_documents({"_id": ObjectId(file_id)}) == 1

    call_command("cleanup_audio")

    assert db["fs.files"].count_documents({"_id": ObjectId(file_id)}) == 0
    assert Answer.objects.get().transcription.gridfs_file_id is None
    status = api_client.get(f"/api/transcription-status/{interview.pk}/{question.pk}").json()
    assert status["transcript"] == "saved first"
