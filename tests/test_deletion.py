"""DELETE /api/sessions/{id} and TRANSCRIPT_RETENTION_DAYS: nothing of the session is left."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from sessions_app.models import Answer, InterviewSession, SessionQuestion
from sessions_app.services import session_create
from sessions_app.tasks import sessions_expire
from tests.support import run_queued_jobs
from transcription.models import Transcription

pytestmark = pytest.mark.django_db


def answered(interview, upload, scripted_engine, spoken):
    """Give the interview one completed answer and one still queued."""
    first, second = interview.ordered_questions()[:2]
    upload(interview.pk, first.pk, scripted_engine.say(spoken("An index"), "An index."))
    assert run_queued_jobs() == 1
    upload(interview.pk, second.pk, scripted_engine.say(spoken("A cache"), "A cache."))
    statuses = set(Transcription.objects.values_list("status", flat=True))
    assert statuses == {"completed", "queued"}
    assert OrmQ.objects.count() == 1  # the queued answer's job


def test_deleting_a_session_leaves_nothing_and_its_queued_job_finds_nothing(
    api_client,
    interview,
    upload,
    gridfs,
    scripted_engine,
    spoken,
    django_capture_on_commit_callbacks,
):
    answered(interview, upload, scripted_engine, spoken)
    assert gridfs["fs.files"].count_documents({}) == 1  # the queued answer's audio
    calls = len(scripted_engine.calls)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.delete(f"/api/sessions/{interview.pk}/")

    assert response.status_code == 204
    assert not InterviewSession.objects.exists()
    assert not SessionQuestion.objects.exists()
    assert not Answer.objects.exists()
    assert not Transcription.objects.exists()
    assert gridfs["fs.files"].count_documents({}) == 0
    assert gridfs["fs.chunks"].count_documents({}) == 0
    assert api_client.get(f"/api/sessions/{interview.pk}/").status_code == 404
    # The job that was queued runs later, finds nothing, and does nothing.
    assert run_queued_jobs() == 1
    assert len(scripted_engine.calls) == calls
    assert not Transcription.objects.exists()
    assert gridfs["fs.files"].count_documents({}) == 0


def test_another_users_session_is_not_found_and_not_deleted(
    api_client, other_user, questions, gridfs
):
    theirs = session_create(user=other_user, question_count=2)

    response = api_client.delete(f"/api/sessions/{theirs.pk}/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"
    assert InterviewSession.objects.filter(pk=theirs.pk).exists()


def test_sessions_older_than_the_retention_period_are_deleted_by_the_hourly_job(
    interview,
    upload,
    gridfs,
    scripted_engine,
    spoken,
    settings,
    user,
    django_capture_on_commit_callbacks,
):
    answered(interview, upload, scripted_engine, spoken)
    recent = session_create(user=user, question_count=1)
    InterviewSession.objects.filter(pk=interview.pk).update(
        created_at=timezone.now() - timedelta(days=31)
    )

    settings.TRANSCRIPT_RETENTION_DAYS = 0
    assert sessions_expire() == "retention off (TRANSCRIPT_RETENTION_DAYS is not set)"
    assert InterviewSession.objects.count() == 2

    settings.TRANSCRIPT_RETENTION_DAYS = 30
    with django_capture_on_commit_callbacks(execute=True):
        assert sessions_expire() == "deleted 1 expired sessions"

    assert list(InterviewSession.objects.all()) == [recent]
    assert not Transcription.objects.exists()
    assert gridfs["fs.files"].count_documents({}) == 0


def test_the_retention_job_is_scheduled_hourly_by_setup_schedules():
    call_command("setup_schedules", stdout=StringIO())

    schedule = Schedule.objects.get(func="sessions_app.tasks.sessions_expire")
    assert schedule.schedule_type == Schedule.HOURLY
