"""What the candidate gets back beyond the transcript: words, delivery, and no score for silence.

Uploads go through the API into the embedded MongoDB; the job runs from the real ORM broker.
"""

import pytest

from sessions_app.models import Answer
from sessions_app.scoring import get_scorer
from tests import support
from tests.openai_server import (  # noqa: F401
    TRANSCRIPTIONS,
    openai_server_fixture,
    openai_settings_fixture,
)
from tests.support import run_queued_jobs
from transcription.backends import Transcript, Word

pytestmark = pytest.mark.django_db


def status(api_client, interview, question) -> dict:
    return api_client.get(f"/api/transcription-status/{interview.pk}/{question.pk}").json()


def analyze(api_client, interview) -> dict:
    response = api_client.post(f"/api/analyze/{interview.pk}")
    assert response.status_code == 200, response.json()
    return response.json()


@pytest.fixture
def no_speech(tmp_path):
    """Six seconds of digital silence, and six of loud pink noise, as WebM/Opus by ffmpeg."""
    return support.no_speech(tmp_path, sample_rate=48000, seed=11)


def test_silence_and_noise_complete_empty_with_no_speech_detected_and_no_score(
    api_client, interview, upload, gridfs, no_speech, settings
):
    settings.TRANSCRIBER = "local"  # The real engine, its voice filter on by default.
    silent, noisy, _ = interview.ordered_questions()
    for question, audio in [(silent, no_speech["silence"]), (noisy, no_speech["noise"])]:
        response = upload(
            interview.pk, question.pk, audio, name="answer.webm", content_type="audio/webm"
        )
        assert response.status_code == 202, response.json()

    assert run_queued_jobs() == 2

    for question in (silent, noisy):
        body = status(api_client, interview, question)
        assert body["status"] == "completed"
        assert body["transcript"] == ""
        assert body["words"] == []
        assert body["delivery"] is None
    result = analyze(api_client, interview)
    assert result["final_score"] is None
    assert result["scored_count"] == 0
    for entry in result["answers"]:
        assert entry["status"] == "completed"
        assert entry["score"] is None  # Not 0: there was nothing to score.
        assert entry["score_error"].startswith("No speech was detected")
        assert entry["feedback"] == []
    for answer in Answer.objects.all():
        assert answer.score is None
        assert answer.transcription.audio_seconds == pytest.approx(6.0, abs=0.1)


def test_the_engine_gets_the_questions_prompt_and_the_apis_return_words_and_delivery(
    api_client, interview, upload, gridfs, scripted_engine, spoken, settings
):
    settings.TRANSCRIPTION_PROMPT = True
    question = interview.ordered_questions()[0]
    said = "so um a tuple is immutable and a list is mutable"
    # 0.4 s a word, a 3.1 s pause after "immutable", the engine unsure of "tuple".
    words, clock = [], 0.0
    for text in said.split():
        words.append(
            Word(text, round(clock, 2), round(clock + 0.3, 2), 0.3 if text == "tuple" else 0.9)
        )
        clock += 3.4 if text == "immutable" else 0.4
    audio = scripted_engine.say(
        spoken("a tuple"), Transcript(text=said, language="en", words=words, audio_seconds=9.0)
    )

    upload(interview.pk, question.pk, audio)
    run_queued_jobs()

    [prompt] = scripted_engine.prompts
    assert prompt.startswith(question.text)
    assert question.model_answer not in prompt
    transcription = Answer.objects.get().transcription
    assert transcription.prompt == prompt
    assert transcription.words == [word.as_dict() for word in words]
    assert transcription.audio_seconds == 9.0
    body = status(api_client, interview, question)
    assert body["words"] == transcription.words
    delivery = body["delivery"]
    assert delivery["word_count"] == 11
    assert delivery["long_pauses"] == [{"after": "immutable", "start": 2.3, "seconds": 3.1}]
    assert delivery["fillers"] == {"total": 1, "counts": {"um": 1}}
    assert delivery["low_confidence_words"] == [{"index": 3, "word": "tuple", "probability": 0.3}]
    [entry] = analyze(api_client, interview)["answers"]
    assert entry["delivery"] == delivery
    assert entry["words"] == transcription.words
    # Delivery sits beside the content score, which is the scorer's for the transcript alone.
    assert (
        entry["score"]
        == get_scorer()
        .score(
            question_text=question.text,
            model_answer=question.model_answer,
            key_points=question.key_points,
            transcript=said,
        )
        .score
    )


def test_with_prompting_off_the_engine_gets_no_prompt(
    interview, upload, gridfs, scripted_engine, spoken, settings
):
    settings.TRANSCRIPTION_PROMPT = False
    question = interview.ordered_questions()[0]

    upload(interview.pk, question.pk, scripted_engine.say(spoken("a list"), "a list"))
    run_queued_jobs()

    assert scripted_engine.prompts == [""]
    assert Answer.objects.get().transcription.prompt == ""


@pytest.mark.parametrize("model", ["gpt-4o-transcribe", "gpt-4o-mini-transcribe"])
def test_answers_complete_with_a_gpt_4o_transcribe_model_configured(
    api_client, interview, upload, gridfs, openai_settings, settings, spoken, model
):
    settings.TRANSCRIBER = "openai"
    settings.OPENAI_TRANSCRIPTION_MODEL = model
    settings.TRANSCRIPTION_PROMPT = True
    question = interview.ordered_questions()[0]

    upload(interview.pk, question.pk, spoken("a tuple is immutable"))
    assert run_queued_jobs() == 1

    body = status(api_client, interview, question)
    assert body["status"] == "completed", body
    assert body["transcript"] == openai_settings.transcript
    assert body["words"] == []  # json answers carry no word timings
    assert body["delivery"] is None
    [request] = [r for r in openai_settings.requests if r.path == TRANSCRIPTIONS]
    assert request.form["response_format"] == "json"
    assert request.form["prompt"].startswith(question.text)
