"""The OpenAI transcriber and scorer, over real HTTP to a local fake of the OpenAI API."""

import json

import pytest

from sessions_app.scoring import Score, ScoringError
from sessions_app.scoring.openai import OpenAIScorer
from tests.openai_server import (  # noqa: F401
    CHAT_COMPLETIONS,
    TRANSCRIPTIONS,
    chat_completion_body,
    error_body,
    openai_server_fixture,
    openai_settings_fixture,
)
from transcription.backends import Transcript, TranscriptionError
from transcription.backends.openai import OpenAITranscriber

# Bytes that would break a careless multipart parser: CRLFs, a fake delimiter, NULs.
AUDIO = b"\x1aE\xdf\xa3" + bytes(range(256)) + b"\r\n--not-the-boundary\r\n\r\n" + b"\x00" * 64

QUESTION = {
    "question_text": "What is the difference between a process and a thread?",
    "model_answer": "A process has its own memory; threads share their process's memory.",
    "key_points": ["separate address space", "threads share memory"],
}


# --- Transcriber ------------------------------------------------------------


def test_transcriber_sends_audio_filename_model_and_language_and_returns_text_and_code(
    openai_settings,
):
    openai_settings.transcript = lambda audio: f"  heard {len(audio)} bytes \n"
    openai_settings.language = "english"

    transcript = OpenAITranscriber().transcribe(
        AUDIO, language="en", content_type="audio/ogg", filename="answer-7.ogg"
    )

    assert transcript == Transcript(text=f"heard {len(AUDIO)} bytes", language="en")
    [request] = openai_settings.requests
    assert request.path == TRANSCRIPTIONS
    assert request.file == AUDIO
    assert request.filename == "answer-7.ogg"
    assert request.file_content_type == "audio/ogg"
    assert request.form["model"] == "whisper-1"
    assert request.form["language"] == "en"
    assert request.form["response_format"] == "verbose_json"


def test_transcriber_omits_language_when_none_and_returns_detected_language_code(
    openai_settings,
):
    openai_settings.language = "spanish"

    transcript = OpenAITranscriber().transcribe(AUDIO, language=None)

    assert transcript.language == "es"
    [request] = openai_settings.requests
    assert "language" not in request.form
    assert request.filename == "answer.webm"
    assert request.file_content_type == "audio/webm"


def test_transcriber_sends_api_key_as_bearer_token(openai_settings, settings):
    settings.OPENAI_API_KEY = "sk-test-123"

    OpenAITranscriber().transcribe(AUDIO, language="en")

    [request] = openai_settings.requests
    assert request.headers["authorization"] == "Bearer sk-test-123"


def test_transcriber_without_api_key_raises_permanent_error_without_a_request(
    openai_settings, settings
):
    settings.OPENAI_API_KEY = ""

    with pytest.raises(TranscriptionError, match="OPENAI_API_KEY") as raised:
        OpenAITranscriber().transcribe(AUDIO, language="en")

    assert raised.value.permanent
    assert openai_settings.count() == 0


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "Invalid file format. Supported formats: ['flac', 'mp3', 'webm']"),
        (401, "Incorrect API key provided: test-key."),
        (413, "Maximum content size limit (26214400) exceeded."),
    ],
)
def test_transcriber_raises_permanent_error_with_api_message_on_client_errors(
    openai_settings, status, message
):
    openai_settings.script(status, error_body(message))

    with pytest.raises(TranscriptionError) as raised:
        OpenAITranscriber().transcribe(AUDIO, language="en")

    assert raised.value.permanent
    assert message in str(raised.value)
    assert str(status) in str(raised.value)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "The server had an error while processing your request."),
        (503, "The engine is currently overloaded, please try again later."),
        (429, "Rate limit reached for whisper-1."),
    ],
)
def test_transcriber_raises_retryable_error_on_server_errors_and_rate_limits(
    openai_settings, status, message
):
    openai_settings.script(status, error_body(message, type="server_error"))

    with pytest.raises(TranscriptionError) as raised:
        OpenAITranscriber().transcribe(AUDIO, language="en")

    assert not raised.value.permanent
    assert message in str(raised.value)
    assert str(status) in str(raised.value)
    assert openai_settings.count(TRANSCRIPTIONS) == 1  # The SDK did not retry on its own.


def test_transcriber_succeeds_again_once_the_api_recovers(openai_settings):
    openai_settings.script(500)
    transcriber = OpenAITranscriber()

    with pytest.raises(TranscriptionError):
        transcriber.transcribe(AUDIO, language="en")
    transcript = transcriber.transcribe(AUDIO, language="en")

    assert transcript.text == openai_settings.transcript
    assert openai_settings.count(TRANSCRIPTIONS) == 2


def test_transcriber_raises_retryable_error_when_connection_is_refused(openai_settings):
    openai_settings.stop()

    with pytest.raises(TranscriptionError, match="could not reach") as raised:
        OpenAITranscriber().transcribe(AUDIO, language="en")

    assert not raised.value.permanent


def test_transcriber_raises_retryable_error_when_the_api_times_out(openai_settings, settings):
    settings.OPENAI_TIMEOUT_SECONDS = 0.2
    openai_settings.latency = 2.0

    with pytest.raises(TranscriptionError, match="could not reach") as raised:
        OpenAITranscriber().transcribe(AUDIO, language="en")

    assert not raised.value.permanent


# --- Scorer -----------------------------------------------------------------


def test_scorer_returns_parsed_score_and_feedback_and_sends_question_answer_and_transcript(
    openai_settings,
):
    openai_settings.completion = json.dumps(
        {"score": 72.5, "feedback": ["You named the shared memory.", "Mention isolation."]}
    )

    score = OpenAIScorer().score(**QUESTION, transcript="Threads share memory, processes don't.")

    assert score == Score(72.5, ["You named the shared memory.", "Mention isolation."])
    [request] = openai_settings.requests
    assert request.path == CHAT_COMPLETIONS
    assert request.json["model"] == "gpt-4o-mini"
    assert request.json["response_format"] == {"type": "json_object"}
    sent = "\n".join(message["content"] for message in request.json["messages"])
    assert QUESTION["question_text"] in sent
    assert QUESTION["model_answer"] in sent
    assert "separate address space" in sent
    assert "Threads share memory, processes don't." in sent


@pytest.mark.parametrize(
    "content",
    [
        "Score: 80. Good answer!",
        json.dumps([80, ["Good."]]),
        json.dumps({"score": "eighty", "feedback": ["Good."]}),
        json.dumps({"score": True, "feedback": ["Good."]}),
        json.dumps({"feedback": ["Good."]}),
        json.dumps({"score": 80}),
        json.dumps({"score": 80, "feedback": "Good."}),
        json.dumps({"score": 80, "feedback": ["Good.", 3]}),
    ],
)
def test_scorer_raises_scoring_error_on_malformed_reply(openai_settings, content):
    openai_settings.completion = content

    with pytest.raises(ScoringError, match="OpenAI scoring reply"):
        OpenAIScorer().score(**QUESTION, transcript="Threads share memory.")


@pytest.mark.parametrize(("returned", "expected"), [(150, 100.0), (-20, 0.0), (1e9, 100.0)])
def test_scorer_clamps_out_of_range_score(openai_settings, returned, expected):
    openai_settings.completion = json.dumps({"score": returned, "feedback": ["Fine."]})

    score = OpenAIScorer().score(**QUESTION, transcript="Threads share memory.")

    assert score.score == expected


def test_scorer_raises_scoring_error_with_api_message_on_api_error(openai_settings):
    openai_settings.script(429, error_body("Rate limit reached for gpt-4o-mini."))

    with pytest.raises(ScoringError, match="429.*Rate limit reached for gpt-4o-mini"):
        OpenAIScorer().score(**QUESTION, transcript="Threads share memory.")


def test_scorer_raises_scoring_error_when_connection_is_refused(openai_settings):
    openai_settings.stop()

    with pytest.raises(ScoringError, match="could not reach"):
        OpenAIScorer().score(**QUESTION, transcript="Threads share memory.")


def test_scorer_raises_scoring_error_on_empty_reply(openai_settings):
    openai_settings.script(200, chat_completion_body(""))

    with pytest.raises(ScoringError, match="no message content"):
        OpenAIScorer().score(**QUESTION, transcript="Threads share memory.")


def test_scorer_without_api_key_raises_scoring_error(openai_settings, settings):
    settings.OPENAI_API_KEY = ""

    with pytest.raises(ScoringError, match="OPENAI_API_KEY"):
        OpenAIScorer().score(**QUESTION, transcript="Threads share memory.")


@pytest.mark.parametrize("transcript", ["", "  \n"])
def test_scorer_gives_zero_for_empty_transcript_without_a_request(openai_settings, transcript):
    score = OpenAIScorer().score(**QUESTION, transcript=transcript)

    assert score == Score(0, ["No speech was transcribed."])
    assert openai_settings.count() == 0
