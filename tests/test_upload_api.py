"""POST /api/upload-answer and GET /api/transcription-status: store audio, report progress."""

import re

import pytest
from bson import ObjectId
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import F
from django.utils import timezone
from django_q.models import OrmQ

from sessions_app.models import Answer, InterviewSession, Question
from sessions_app.services import session_create
from tests.support import run_queued_jobs, stored_state
from transcription.backends import TranscriptionError
from transcription.models import Transcription

pytestmark = pytest.mark.django_db


def session_status(api_client, session):
    response = api_client.get(f"/api/transcription-status/{session.pk}")
    assert response.status_code == 200
    return response.json()


def test_upload_stores_the_audio_and_returns_before_transcription_starts(
    interview, upload, gridfs, scripted_engine, spoken, api_client
):
    question = interview.ordered_questions()[0]

    response = upload(interview.pk, question.pk, spoken("I would add an index"))

    assert response.status_code == 202
    body = response.json()
    assert body == {
        "status": "processing",
        "message": "Audio uploaded successfully, transcription in progress",
        "file_id": body["file_id"],
        "transcription_status": "queued",
        "status_url": f"http://testserver/api/transcription-status/{interview.pk}/{question.pk}",
    }
    assert api_client.get(body["status_url"]).json()["status"] == "queued"
    assert re.fullmatch(r"[0-9a-f]{24}", body["file_id"])
    assert gridfs["fs.files"].count_documents({"_id": ObjectId(body["file_id"])}) == 1
    job = OrmQ.objects.get()
    assert job.task["func"] == "transcription.tasks.transcribe"
    assert job.task["args"] == (Answer.objects.get(question=question).transcription_id,)
    assert scripted_engine.calls == []


def test_session_status_counts_answers_by_transcription_status(
    api_client, user, questions, upload, gridfs, scripted_engine, spoken
):
    session = session_create(user=user, question_count=4)
    answered, broken, claimed, unanswered = session.ordered_questions()
    upload(session.pk, answered.pk, scripted_engine.say(spoken("use a cache"), "use a cache"))
    upload(
        session.pk,
        broken.pk,
        scripted_engine.say(
            spoken("garbled"), TranscriptionError("Invalid file format.", permanent=True)
        ),
    )
    upload(session.pk, claimed.pk, spoken("a worker elsewhere has this one"))
    # What a worker's claim does to the answer it starts on.
    Transcription.objects.filter(answer__question=claimed).update(
        status=Transcription.Status.PROCESSING,
        processing_started_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    order = [answered.pk, broken.pk, claimed.pk, unanswered.pk]

    before = session_status(api_client, session)

    assert before["session_id"] == session.pk
    assert before["summary"] == {
        "total": 4,
        "completed": 0,
        "processing": 1,
        "queued": 2,
        "failed": 0,
        "not_uploaded": 1,
    }
    assert [(q["question_id"], q["status"]) for q in before["questions"]] == list(
        zip(order, ["queued", "queued", "processing", "not_uploaded"], strict=True)
    )

    run_queued_jobs()
    after = session_status(api_client, session)

    assert after["summary"] == {
        "total": 4,
        "completed": 1,
        "processing": 1,
        "queued": 0,
        "failed": 1,
        "not_uploaded": 1,
    }
    assert [(q["question_id"], q["status"]) for q in after["questions"]] == list(
        zip(order, ["completed", "failed", "processing", "not_uploaded"], strict=True)
    )
    assert after["questions"][0]["transcript"] == "use a cache"
    assert after["questions"][1]["error"] == (
        "This recording could not be transcribed; record the answer again."
    )


def test_session_status_of_a_session_without_answers_counts_every_question_not_uploaded(
    api_client, interview
):
    body = session_status(api_client, interview)

    assert body["summary"] == {
        "total": 3,
        "completed": 0,
        "processing": 0,
        "queued": 0,
        "failed": 0,
        "not_uploaded": 3,
    }
    assert body["questions"] == [
        {"question_id": question.pk, "status": "not_uploaded"}
        for question in interview.ordered_questions()
    ]


def test_answer_status_reports_the_transcript_once_transcribed(
    api_client, interview, upload, gridfs, scripted_engine, spoken
):
    question = interview.ordered_questions()[0]
    upload(interview.pk, question.pk, scripted_engine.say(spoken("an index"), "An index."))
    url = f"/api/transcription-status/{interview.pk}/{question.pk}"
    assert api_client.get(url).json()["status"] == "queued"

    run_queued_jobs()
    body = api_client.get(url).json()

    assert body["question_id"] == question.pk
    assert body["status"] == "completed"
    assert body["transcript"] == "An index."
    assert body["error"] == ""


def test_answer_status_of_an_unanswered_question_is_404_answer_not_found(api_client, interview):
    question = interview.ordered_questions()[0]

    response = api_client.get(f"/api/transcription-status/{interview.pk}/{question.pk}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "answer_not_found"


def _target(kind: str, interview) -> tuple[int, int]:
    open_question = interview.ordered_questions()[1]
    if kind == "open_question":
        return interview.pk, open_question.pk
    if kind == "question_not_in_session":
        return interview.pk, Question.objects.exclude(interview_sessions=interview).first().pk
    if kind == "unknown_question":
        return interview.pk, Question.objects.order_by("-pk").first().pk + 1
    if kind == "unknown_session":
        return InterviewSession.objects.order_by("-pk").first().pk + 1, open_question.pk
    raise ValueError(kind)


def _payload(kind: str, speech: bytes) -> dict:
    if kind == "speech in another field":
        return {"recording": SimpleUploadedFile("answer.wav", speech, content_type="audio/wav")}
    if kind == "empty file":
        return {"audio": SimpleUploadedFile("answer.wav", b"", content_type="audio/wav")}
    if kind == "text instead of a file":
        return {"audio": "my answer"}
    if kind == "speech":
        return {"audio": SimpleUploadedFile("answer.wav", speech, content_type="audio/wav")}
    raise ValueError(kind)


@pytest.mark.parametrize(
    ("target", "payload", "status_code", "code", "fields"),
    [
        pytest.param(
            "open_question", "speech in another field", 400, "invalid", ["audio"], id="no-audio"
        ),
        pytest.param("open_question", "empty file", 400, "invalid", ["audio"], id="empty-file"),
        pytest.param(
            "open_question", "text instead of a file", 400, "invalid", ["audio"], id="not-a-file"
        ),
        pytest.param(
            "question_not_in_session",
            "speech",
            404,
            "question_not_in_session",
            None,
            id="question-not-in-session",
        ),
        pytest.param(
            "unknown_question",
            "speech",
            404,
            "question_not_in_session",
            None,
            id="unknown-question",
        ),
        pytest.param(
            "unknown_session", "speech", 404, "session_not_found", None, id="unknown-session"
        ),
    ],
)
def test_bad_upload_is_refused_and_stores_nothing(
    target,
    payload,
    status_code,
    code,
    fields,
    api_client,
    interview,
    upload,
    gridfs,
    spoken,
    django_capture_on_commit_callbacks,
):
    # An earlier answer, so that "unchanged" is about rows and files that exist.
    upload(interview.pk, interview.ordered_questions()[0].pk, spoken("my first answer"))
    session_id, question_id = _target(target, interview)
    before = stored_state(gridfs)

    with django_capture_on_commit_callbacks() as enqueued:
        response = api_client.post(
            f"/api/upload-answer/{session_id}/{question_id}",
            _payload(payload, spoken("my second answer")),
            format="multipart",
        )

    assert response.status_code == status_code
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert (list(error["fields"]) if "fields" in error else None) == fields
    assert enqueued == []
    assert stored_state(gridfs) == before
