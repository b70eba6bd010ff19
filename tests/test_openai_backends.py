"""The OpenAI transcriber and scorer, over real HTTP to a local fake of the OpenAI API."""

import json
import ssl

import pytest

from interview_site.openai_client import tls_context
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
from transcription.backends import Transcript, TranscriptionError, Word
from transcription.backends.openai import OpenAITranscriber, language_code

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

    seconds = round(len(AUDIO) / 16000, 2)  # The fake's duration for these bytes.
    assert transcript == Transcript(
        text=f"heard {len(AUDIO)} bytes",
        language="en",
        words=[
            Word("heard", 0.0, round(seconds / 3, 2), None),
            Word(str(len(AUDIO)), round(seconds / 3, 2), round(2 * seconds / 3, 2), None),
            Word("bytes", round(2 * seconds / 3, 2), seconds, None),
        ],
        audio_seconds=seconds,
    )
    [request] = openai_settings.requests
    assert request.path == TRANSCRIPTIONS
    assert request.file == AUDIO
    assert request.filename == "answer-7.ogg"
    assert request.file_content_type == "audio/ogg"
    assert request.form["model"] == "whisper-1"
    assert request.form["language"] == "en"
    assert request.form["response_format"] == "verbose_json"
    assert request.form_lists["timestamp_granularities[]"] == ["word", "segment"]
    assert "prompt" not in request.form


def test_transcriber_sends_the_prompt(openai_settings):
    prompt = "Question: What is a generator in Python? Topic words: yield, iterator."

    OpenAITranscriber().transcribe(AUDIO, language="en", prompt=prompt)

    [request] = openai_settings.requests
    assert request.form["prompt"] == prompt


@pytest.mark.parametrize("model", ["gpt-4o-transcribe", "gpt-4o-mini-transcribe"])
def test_fake_api_rejects_verbose_json_for_gpt_4o_transcribe_models_as_the_real_one_does(
    openai_settings, model
):
    import openai

    from interview_site.openai_client import openai_client

    with pytest.raises(openai.BadRequestError) as raised:
        openai_client().audio.transcriptions.create(
            model=model, file=("a.webm", AUDIO, "audio/webm"), response_format="verbose_json"
        )

    assert raised.value.status_code == 400
    assert "verbose_json" in raised.value.message


@pytest.mark.parametrize("model", ["gpt-4o-transcribe", "gpt-4o-mini-transcribe-2025-03-20"])
def test_transcriber_asks_gpt_4o_transcribe_models_for_json_and_takes_the_sessions_language(
    openai_settings, settings, model
):
    settings.OPENAI_TRANSCRIPTION_MODEL = model

    transcript = OpenAITranscriber().transcribe(AUDIO, language="fr", prompt="Question: CSRF?")

    assert transcript.text == openai_settings.transcript
    assert transcript.language == "fr"  # json carries no language: the session's.
    assert transcript.words == []
    [request] = openai_settings.requests
    assert request.form["response_format"] == "json"
    assert "timestamp_granularities[]" not in request.form
    assert request.form["prompt"] == "Question: CSRF?"
    assert openai_settings.successes() == {"answer.webm": 1}


# Every language name Whisper can report (its tokenizer's table), with the code expected.
WHISPER_LANGUAGES = (
    "en english, zh chinese, de german, es spanish, ru russian, ko korean, fr french, "
    "ja japanese, pt portuguese, tr turkish, pl polish, ca catalan, nl dutch, ar arabic, "
    "sv swedish, it italian, id indonesian, hi hindi, fi finnish, vi vietnamese, he hebrew, "
    "uk ukrainian, el greek, ms malay, cs czech, ro romanian, da danish, hu hungarian, "
    "ta tamil, no norwegian, th thai, ur urdu, hr croatian, bg bulgarian, lt lithuanian, "
    "la latin, mi maori, ml malayalam, cy welsh, sk slovak, te telugu, fa persian, "
    "lv latvian, bn bengali, sr serbian, az azerbaijani, sl slovenian, kn kannada, "
    "et estonian, mk macedonian, br breton, eu basque, is icelandic, hy armenian, ne nepali, "
    "mn mongolian, bs bosnian, kk kazakh, sq albanian, sw swahili, gl galician, mr marathi, "
    "pa punjabi, si sinhala, km khmer, sn shona, yo yoruba, so somali, af afrikaans, "
    "oc occitan, ka georgian, be belarusian, tg tajik, sd sindhi, gu gujarati, am amharic, "
    "yi yiddish, lo lao, uz uzbek, fo faroese, ht haitian creole, ps pashto, tk turkmen, "
    "nn nynorsk, mt maltese, sa sanskrit, lb luxembourgish, my myanmar, bo tibetan, "
    "tl tagalog, mg malagasy, as assamese, tt tatar, haw hawaiian, ln lingala, ha hausa, "
    "ba bashkir, jv javanese, su sundanese, yue cantonese"
)


def test_every_language_whisper_can_report_maps_to_its_code():
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    table = dict(entry.split(" ", 1)[::-1] for entry in WHISPER_LANGUAGES.split(", "))
    # Whisper's own list of codes; it spells Javanese "jw", ISO 639-1 says "jv".
    assert set(table.values()) == {"jv" if code == "jw" else code for code in _LANGUAGE_CODES}
    assert {name: language_code(name) for name in table} == table
    assert language_code("English") == "en"
    assert language_code("not a language at all") == ""


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


def test_a_process_s_clients_share_one_certificate_store_and_still_verify(
    openai_settings, settings, monkeypatch
):
    tls_context()  # as qcluster's preload makes it, before it forks its workers
    loaded = []
    load = ssl.SSLContext.load_verify_locations

    def counting(context, *args, **kwargs):
        loaded.append(args)
        return load(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    for seconds in (10, 11):  # a client per configuration: two clients
        settings.OPENAI_TIMEOUT_SECONDS = seconds
        OpenAITranscriber().transcribe(AUDIO, language="en")

    assert len(openai_settings.requests) == 2
    assert loaded == []  # neither client read a CA bundle of its own
    assert tls_context().verify_mode == ssl.CERT_REQUIRED
    assert tls_context().check_hostname


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
