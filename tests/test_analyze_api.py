"""POST /api/analyze/{session}: wait for transcriptions, then score the session."""

import statistics

import pytest
from django.db.models import F
from django.utils import timezone
from model_bakery import baker

from sessions_app.models import InterviewSession, Question, SessionQuestion
from tests.support import run_queued_jobs
from transcription.backends import TranscriptionError
from transcription.models import Transcription

pytestmark = pytest.mark.django_db

OFF_TOPIC = (
    "I enjoy hiking in the mountains on weekends and I usually bring a sandwich, "
    "a map and a warm jacket, because the weather changes quickly up there."
)
ANSWER_FIELDS = {
    "question_id",
    "transcript",
    "score",
    "score_error",
    "feedback",
    "model_answer",
    "status",
    "error",
    "words",  # issue 15: additive
    "delivery",
}


def analyze(api_client, session):
    return api_client.post(f"/api/analyze/{session.pk}")


def answer_with(scripted_engine, spoken, upload, session, question, transcript):
    """Upload speech of ``transcript`` that the stand-in engine transcribes as that text."""
    response = upload(session.pk, question.pk, scripted_engine.say(spoken(transcript), transcript))
    assert response.status_code == 202
    return response


def test_analyze_while_transcriptions_run_reports_pending_and_processing_counts(
    api_client, interview, upload, gridfs, scripted_engine, spoken
):
    first, second, _ = interview.ordered_questions()
    answer_with(scripted_engine, spoken, upload, interview, first, "still being transcribed")
    answer_with(scripted_engine, spoken, upload, interview, second, "still in the queue")
    # What a worker's claim does to the answer it starts on.
    Transcription.objects.filter(answer__question=first).update(
        status=Transcription.Status.PROCESSING,
        processing_started_at=timezone.now(),
        attempts=F("attempts") + 1,
    )

    response = analyze(api_client, interview)

    assert response.status_code == 202
    body = response.json()
    assert body == {
        "status": "transcription_pending",
        "message": "Waiting for 2 transcriptions to complete",
        "pending_count": 2,
        "processing_count": 1,
        "retry_after": body["retry_after"],  # an estimate: see test_events.py
    }
    assert 1 <= body["retry_after"] <= 30
    assert response["Retry-After"] == str(body["retry_after"])
    # Finish was pressed: the session is analyzed as soon as the last transcript lands.
    assert api_client.get(f"/api/sessions/{interview.pk}/").json()["status"] == "analyzing"


def test_analyze_after_transcriptions_complete_scores_answers_in_question_order(
    api_client, interview, upload, gridfs, scripted_engine, spoken
):
    questions = list(interview.ordered_questions())
    transcripts = {
        questions[0].pk: questions[0].model_answer,
        questions[1].pk: OFF_TOPIC,
        questions[2].pk: "I am not sure, I would probably ask a colleague about it.",
    }
    # Last question first, so the upload order is not the question order.
    for question in reversed(questions):
        answer_with(scripted_engine, spoken, upload, interview, question, transcripts[question.pk])
    waiting = analyze(api_client, interview)
    assert waiting.status_code == 202
    assert waiting.json()["pending_count"] == 3
    assert waiting.json()["processing_count"] == 0

    assert run_queued_jobs() == 3
    response = analyze(api_client, interview)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert body["scored_count"] == 3
    assert body["failed_count"] == 0
    answers = body["answers"]
    assert [answer["question_id"] for answer in answers] == [q.pk for q in questions]
    for answer, question in zip(answers, questions, strict=True):
        assert set(answer) == ANSWER_FIELDS
        assert answer["status"] == "completed"
        assert answer["error"] == ""
        assert answer["transcript"] == transcripts[question.pk]
        assert answer["model_answer"] == question.model_answer
        assert 0 <= answer["score"] <= 100
        assert answer["feedback"]
    mean = statistics.fmean(answer["score"] for answer in answers)
    assert body["final_score"] == pytest.approx(mean, abs=0.05)


def test_failed_transcription_is_reported_but_not_counted_in_the_final_score(
    api_client, interview, upload, gridfs, scripted_engine, spoken
):
    first, second, third = interview.ordered_questions()
    answer_with(scripted_engine, spoken, upload, interview, first, first.model_answer)
    broken = scripted_engine.say(
        spoken("an unreadable recording"),
        TranscriptionError("Invalid file format.", permanent=True),
    )
    assert upload(interview.pk, second.pk, broken).status_code == 202
    answer_with(scripted_engine, spoken, upload, interview, third, OFF_TOPIC)
    run_queued_jobs()

    response = analyze(api_client, interview)

    assert response.status_code == 200
    body = response.json()
    assert body["scored_count"] == 2
    assert body["failed_count"] == 1
    by_question = {answer["question_id"]: answer for answer in body["answers"]}
    assert list(by_question) == [first.pk, second.pk, third.pk]
    failed = by_question[second.pk]
    assert failed["status"] == "failed"
    # What to do, not the engine's words (those go to the log).
    assert failed["error"] == "This recording could not be transcribed; record the answer again."
    assert failed["score"] is None
    assert failed["transcript"] == ""
    scored = [by_question[first.pk]["score"], by_question[third.pk]["score"]]
    assert body["final_score"] == pytest.approx(statistics.fmean(scored), abs=0.05)
    assert body["final_score"] > 0


def test_analyze_without_answers_is_refused_with_no_answers(api_client, interview):
    response = analyze(api_client, interview)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "no_answers"
    assert error["message"]
    interview.refresh_from_db()
    assert interview.status == InterviewSession.Status.IN_PROGRESS


def test_the_model_answer_scores_higher_than_an_off_topic_answer(
    api_client, user, questions, upload, gridfs, scripted_engine, spoken
):
    question = Question.objects.first()
    good_session, off_topic_session = baker.make(InterviewSession, user=user, _quantity=2)
    for session in (good_session, off_topic_session):
        SessionQuestion.objects.create(session=session, question=question, position=1)
    answer_with(scripted_engine, spoken, upload, good_session, question, question.model_answer)
    answer_with(scripted_engine, spoken, upload, off_topic_session, question, OFF_TOPIC)
    run_queued_jobs()

    good = analyze(api_client, good_session).json()
    off_topic = analyze(api_client, off_topic_session).json()

    assert good["answers"][0]["score"] > off_topic["answers"][0]["score"]
    assert good["final_score"] > off_topic["final_score"]


def test_session_detail_shows_analyzed_status_and_final_score_after_analysis(
    api_client, interview, upload, gridfs, scripted_engine, spoken
):
    question = interview.ordered_questions()[0]
    answer_with(scripted_engine, spoken, upload, interview, question, question.model_answer)
    run_queued_jobs()
    final_score = analyze(api_client, interview).json()["final_score"]

    detail = api_client.get(f"/api/sessions/{interview.pk}/").json()

    assert detail["status"] == "analyzed"
    assert final_score is not None
    assert detail["final_score"] == final_score


def test_reupload_after_analysis_returns_the_session_to_in_progress_without_a_score(
    api_client, interview, upload, gridfs, scripted_engine, spoken
):
    question = interview.ordered_questions()[0]
    answer_with(scripted_engine, spoken, upload, interview, question, question.model_answer)
    run_queued_jobs()
    assert analyze(api_client, interview).status_code == 200

    answer_with(scripted_engine, spoken, upload, interview, question, OFF_TOPIC)

    detail = api_client.get(f"/api/sessions/{interview.pk}/").json()
    assert detail["status"] == "in_progress"
    assert detail["final_score"] is None
    assert analyze(api_client, interview).json()["status"] == "transcription_pending"
