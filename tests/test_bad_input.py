"""Bad input gets a clear JSON error with the right status, and changes nothing."""

import re
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId
from django.core.files.uploadedfile import SimpleUploadedFile

from sessions_app.models import Answer, InterviewSession
from sessions_app.services import session_create
from tests.support import run_queued_jobs, stored_state

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)
TEXT = b"Dear hiring manager, this is not a recording at all.\n" * 20
WEBM_THEN_GARBAGE = b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 20


@dataclass
class Upload:
    """One upload request; ``url`` may name another session or question than the default."""

    audio: bytes | None = None
    name: str = "answer.webm"
    content_type: str = "audio/webm"
    url: str | None = None
    field: str = "audio"
    extra: dict[str, Any] | None = None


@pytest.fixture
def other_session(other_user, questions):
    return session_create(user=other_user, question_count=2)


@pytest.fixture
def send(api_client, interview, django_capture_on_commit_callbacks):
    question = interview.ordered_questions()[0]

    def send(upload: Upload):
        url = upload.url or f"/api/upload-answer/{interview.pk}/{question.pk}"
        data = {}
        if upload.audio is not None:
            data[upload.field] = SimpleUploadedFile(
                upload.name, upload.audio, content_type=upload.content_type
            )
        with django_capture_on_commit_callbacks(execute=True):
            return api_client.post(url, data, format="multipart", **(upload.extra or {}))

    return send


def bank_question_outside(interview):
    return interview.questions.model.objects.exclude(pk__in=interview.questions.all()).first()


CASES = {
    "no audio field": (
        lambda s, i, o: Upload(audio=s("hello"), field="recording"),
        400,
        "invalid",
        "audio: No file was submitted.",
    ),
    "empty file": (
        lambda s, i, o: Upload(audio=b""),
        400,
        "invalid",
        "The submitted file is empty",
    ),
    "text file named answer.webm": (
        lambda s, i, o: Upload(audio=TEXT),
        415,
        "unsupported_audio",
        "not audio in an accepted format",
    ),
    "image file named answer.webm": (
        lambda s, i, o: Upload(audio=PNG, content_type="image/png"),
        415,
        "unsupported_audio",
        "not audio in an accepted format",
    ),
    "bytes of no accepted container, declared audio/mpeg": (
        lambda s, i, o: Upload(
            audio=bytes(range(256)) * 8, name="a.mp3", content_type="audio/mpeg"
        ),
        415,
        "unsupported_audio",
        "WebM/Matroska, Ogg, WAV, MP3, MP4/M4A or FLAC",
    ),
    "file over 25 MB": (
        lambda s, i, o: Upload(audio=b"\x1a\x45\xdf\xa3" + bytes(25 * 1024 * 1024)),
        413,
        "too_large",
        "larger than the 25 MB limit",
    ),
    "body declared over 25 MB is refused before it is read": (
        lambda s, i, o: Upload(audio=s("hello"), extra={"CONTENT_LENGTH": str(30 * 1024 * 1024)}),
        413,
        "too_large",
        "larger than the 25 MB limit",
    ),
    "unknown session": (
        lambda s, i, o: Upload(audio=s("hello"), url="/api/upload-answer/987654/1"),
        404,
        "session_not_found",
        "Interview session not found.",
    ),
    "question not part of the session": (
        lambda s, i, o: Upload(
            audio=s("hello"), url=f"/api/upload-answer/{i.pk}/{bank_question_outside(i).pk}"
        ),
        404,
        "question_not_in_session",
        "not part of the session",
    ),
    "another user's session": (
        lambda s, i, o: Upload(
            audio=s("hello"),
            url=f"/api/upload-answer/{o.pk}/{o.ordered_questions()[0].pk}",
        ),
        404,
        "session_not_found",
        "Interview session not found.",
    ),
    "malformed id": (
        lambda s, i, o: Upload(audio=s("hello"), url="/api/upload-answer/first/1"),
        404,
        "not_found",
        "No API endpoint",
    ),
}


@pytest.mark.parametrize(("build", "status", "code", "message"), CASES.values(), ids=CASES.keys())
def test_bad_upload_gets_a_clear_error_and_changes_nothing(
    build, status, code, message, send, interview, other_session, gridfs, spoken, settings
):
    settings.MAX_ANSWER_SECONDS = 2
    # Something stored already, so "unchanged" is checked against real rows and files.
    send(Upload(audio=spoken("an earlier answer", "webm")))
    other_session_answers = Answer.objects.filter(session=other_session).count()
    before = stored_state(gridfs)

    response = send(build(lambda text: spoken(text, "webm"), interview, other_session))

    assert response.status_code == status, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == code
    assert message in error["message"]
    assert stored_state(gridfs) == before
    assert Answer.objects.filter(session=other_session).count() == other_session_answers


@pytest.mark.parametrize(
    "name", ["../../etc/passwd.webm", "C:\\Windows\\answer.webm", "x" * 10_000 + ".webm"]
)
def test_uploaded_file_name_is_never_used_to_store_the_audio(name, send, interview, gridfs, spoken):
    response = send(Upload(audio=spoken("named badly", "webm"), name=name))

    assert response.status_code == 202
    stored = gridfs["fs.files"].find_one({"_id": ObjectId(response.json()["file_id"])})
    assert stored["filename"] == "recording"
    assert stored["metadata"]["content_type"] == "audio/webm"


def test_declared_content_type_is_replaced_by_the_sniffed_container(send, gridfs, spoken):
    response = send(Upload(audio=spoken("a wave file", "wav"), content_type="video/mp4"))

    assert response.status_code == 202
    stored = gridfs["fs.files"].find_one({"_id": ObjectId(response.json()["file_id"])})
    assert stored["metadata"]["content_type"] == "audio/wav"
    assert Answer.objects.get().transcription.content_type == "audio/wav"


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("webm", "audio/webm"), ("ogg", "audio/ogg"), ("mp3", "audio/mpeg"), ("m4a", "audio/mp4")],
)
def test_every_accepted_container_is_recognised(fmt, mime, send, gridfs, spoken):
    response = send(Upload(audio=spoken("accepted", fmt), name=f"answer.{fmt}"))

    assert response.status_code == 202
    assert Answer.objects.get().transcription.content_type == mime


@pytest.mark.parametrize(
    ("audio", "error"),
    [
        (lambda spoken: WEBM_THEN_GARBAGE, "could not be decoded"),
        (lambda spoken: spoken("cut off", "wav")[:44], "holds no audio"),
    ],
    ids=["corrupt webm", "wav truncated after its header"],
)
def test_corrupt_audio_that_passes_the_sniff_is_refused_at_upload_with_a_clear_error(
    audio, error, send, gridfs, spoken
):
    # Decoding the upload tells it is not audio: refused at once, before anything is stored.
    before = stored_state(gridfs)

    response = send(Upload(audio=audio(spoken)))

    assert response.status_code == 400
    assert error in response.json()["error"]["message"]
    assert stored_state(gridfs) == before


def test_an_answer_longer_than_the_limit_fails_with_the_reason_and_never_reaches_the_engine(
    api_client, interview, send, gridfs, scripted_engine, spoken, settings, caplog
):
    """The length is measured by the job (the upload stays fast under load): the answer is
    accepted, then fails for good with what to do, and no engine ever hears it."""
    settings.MAX_ANSWER_SECONDS = 2
    audio = spoken("This answer runs on for longer than the limit allows.", "webm")

    response = send(Upload(audio=scripted_engine.say(audio, "never transcribed")))
    assert response.status_code == 202
    with caplog.at_level("INFO", logger="transcription.services"):
        assert run_queued_jobs() == 1

    transcription = Answer.objects.get().transcription
    assert transcription.status == "failed"
    assert transcription.error == (
        "The answer is longer than the 2 second limit; record a shorter one."
    )
    assert scripted_engine.calls == []
    measured = float(re.search(r"measuring stopped at ([\d.]+) s", caplog.text).group(1))
    assert 2 < measured <= 2.02  # the limit plus at most one 20 ms Opus packet
    question = interview.ordered_questions()[0]
    status = api_client.get(f"/api/transcription-status/{interview.pk}/{question.pk}").json()
    assert status["status"] == "failed"
    assert status["error"] == transcription.error


def test_analyze_without_answers_is_refused(api_client, interview):
    response = api_client.post(f"/api/analyze/{interview.pk}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_answers"
    interview.refresh_from_db()
    assert interview.status == InterviewSession.Status.IN_PROGRESS


def test_upload_to_an_analyzed_session_reopens_it_for_a_new_analysis(
    api_client, interview, send, gridfs, scripted_engine, spoken
):
    """A candidate may re-record after seeing the results; the old analysis is then stale."""
    send(Upload(audio=scripted_engine.say(spoken("first take", "webm"), "first take")))
    run_queued_jobs()
    assert api_client.post(f"/api/analyze/{interview.pk}").status_code == 200

    response = send(Upload(audio=spoken("second take", "webm")))

    assert response.status_code == 202
    interview.refresh_from_db()
    assert interview.status == InterviewSession.Status.IN_PROGRESS
    assert interview.final_score is None
    assert api_client.post(f"/api/analyze/{interview.pk}").json()["status"] == (
        "transcription_pending"
    )
