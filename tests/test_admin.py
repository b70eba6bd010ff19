"""Staff run the product from the Django admin: answer statuses and re-queuing by hand."""

import pytest
from bson import ObjectId
from django.test import Client
from model_bakery import baker

from sessions_app.models import Answer
from tests.support import run_queued_jobs
from transcription.backends import TranscriptionError

pytestmark = pytest.mark.django_db

ANSWERS = "/admin/sessions_app/answer/"


@pytest.fixture
def staff(db):
    return baker.make("auth.User", username="operator", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(staff):
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def failed_answers(interview, upload, gridfs, scripted_engine, spoken):
    """Two answers whose transcription failed: one still has its audio, one lost it."""
    first, second, _ = interview.ordered_questions()
    error = TranscriptionError("Engine rejected the audio", permanent=True)
    audio = scripted_engine.say(spoken("a retried answer"), error)
    upload(interview.pk, first.pk, audio)
    lost = upload(interview.pk, second.pk, scripted_engine.say(spoken("lost audio"), error))
    run_queued_jobs()
    gridfs["fs.files"].delete_one({"_id": ObjectId(lost.json()["file_id"])})
    kept, gone = Answer.objects.order_by("pk")
    assert kept.transcription.status == gone.transcription.status == Answer.Status.FAILED
    # The engine works again for the audio that is still there.
    scripted_engine.say(audio, "a retried answer")
    return kept, gone


def test_staff_requeue_action_completes_failed_answer_and_refuses_one_without_audio(
    admin_client, failed_answers, gridfs, django_capture_on_commit_callbacks
):
    kept, gone = failed_answers

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            ANSWERS,
            {"action": "requeue_transcriptions", "_selected_action": [kept.pk, gone.pk]},
            follow=True,
        )

    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    assert "Re-queued 1 transcriptions." in shown
    assert any(
        f"1 could not be re-queued: answer {gone.pk}: its audio is no longer stored" in message
        for message in shown
    )
    kept.refresh_from_db()
    gone.refresh_from_db()
    assert kept.transcription.status == Answer.Status.QUEUED
    assert gone.transcription.status == Answer.Status.FAILED

    assert run_queued_jobs() == 1

    kept.refresh_from_db()
    assert kept.transcription.status == Answer.Status.COMPLETED
    assert kept.transcription.transcript == "a retried answer"
    assert gridfs["fs.files"].count_documents({}) == 0


def test_requeue_button_on_the_answer_page_requeues_that_answer(
    admin_client, failed_answers, django_capture_on_commit_callbacks
):
    kept, _ = failed_answers
    page = admin_client.get(f"{ANSWERS}{kept.pk}/change/")
    assert b"Re-queue transcription" in page.content

    with django_capture_on_commit_callbacks(execute=True):
        posted = admin_client.post(f"{ANSWERS}{kept.pk}/requeue/")
    response = admin_client.get(posted.url)

    assert posted.url == f"{ANSWERS}{kept.pk}/change/"
    assert "Re-queued 1 transcriptions." in [str(m) for m in response.context["messages"]]
    kept.refresh_from_db()
    assert kept.transcription.status == Answer.Status.QUEUED
    # The page links to the job waiting in Django-Q's queue.
    assert b'href="/admin/django_q/ormq/?q=transcribe-' in response.content
    assert b"waiting in the queue: 1" in response.content
    assert run_queued_jobs() == 1
    kept.refresh_from_db()
    assert kept.transcription.status == Answer.Status.COMPLETED


def test_answer_list_filters_by_status_and_searches_by_session(
    admin_client, failed_answers, interview, upload, scripted_engine, spoken
):
    kept, gone = failed_answers
    third = interview.ordered_questions()[2]
    upload(interview.pk, third.pk, scripted_engine.say(spoken("fine"), "fine"))
    run_queued_jobs()

    filtered = admin_client.get(ANSWERS, {"transcription__status__exact": "failed"})
    searched = admin_client.get(ANSWERS, {"q": str(kept.session_id)})
    session_page = admin_client.get(
        f"/admin/sessions_app/interviewsession/{kept.session_id}/change/"
    )
    sessions = admin_client.get("/admin/sessions_app/interviewsession/")

    assert filtered.status_code == searched.status_code == session_page.status_code == 200
    assert set(filtered.context["cl"].result_list) == {kept, gone}
    assert len(searched.context["cl"].result_list) == 3
    assert b"This recording could not be transcribed" in session_page.content
    assert b"1 completed" in sessions.content
    assert b"2 failed" in sessions.content


def test_django_q_admin_pages_are_reachable(admin_client):
    for page in ["ormq", "failure", "success", "schedule"]:
        assert admin_client.get(f"/admin/django_q/{page}/").status_code == 200


def test_non_staff_user_cannot_reach_the_admin(user):
    client = Client()
    client.force_login(user)

    for url in ["/admin/", ANSWERS, "/admin/django_q/failure/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith("/admin/login/")
