"""The default engine: faster-whisper on this CPU, with the model from the two PyPI packages."""

import hashlib

import pytest

from tests.support import word_error_rate
from transcription.backends import TranscriptionError, get_transcriber
from transcription.backends.local import MODEL_SHA256, ensure_model_dir

SENTENCES = [
    "I would start by profiling the slow endpoint and reading the database queries.",
    "An index makes reads faster but it slows down writes and uses more disk space.",
    "A good code review looks for correctness, readability and missing tests.",
]


@pytest.fixture(scope="module")
def engine():
    return get_transcriber()


@pytest.mark.parametrize("fmt", ["webm", "wav"])
def test_local_engine_transcribes_spoken_english(engine, spoken, fmt):
    transcripts = [engine.transcribe(spoken(text, fmt), language=None) for text in SENTENCES]

    reference = " ".join(SENTENCES)
    hypothesis = " ".join(transcript.text for transcript in transcripts)
    assert word_error_rate(reference, hypothesis) <= 0.25, hypothesis
    assert {transcript.language for transcript in transcripts} == {"en"}


def test_local_engine_uses_the_sessions_language_when_given(engine, spoken):
    transcripts = [engine.transcribe(spoken(text, "ogg"), language="en") for text in SENTENCES]

    hypothesis = " ".join(transcript.text for transcript in transcripts)
    assert word_error_rate(" ".join(SENTENCES), hypothesis) <= 0.25, hypothesis
    assert {transcript.language for transcript in transcripts} == {"en"}


def test_undecodable_audio_is_a_permanent_error(engine):
    with pytest.raises(TranscriptionError) as error:
        engine.transcribe(b"\x1aE\xdf\xa3 this is not really a webm file" * 10, language=None)

    assert error.value.permanent


def test_model_is_joined_from_both_packages_and_checked(settings, tmp_path):
    model_dir = ensure_model_dir(tmp_path / "model")

    digest = hashlib.sha256((model_dir / "model.bin").read_bytes()).hexdigest()
    assert digest == MODEL_SHA256
    assert {path.name for path in model_dir.iterdir()} >= {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.json",
    }


def test_a_damaged_model_file_is_joined_again(tmp_path):
    model_dir = ensure_model_dir(tmp_path / "model")
    (model_dir / "model.bin").write_bytes(b"damaged")
    (model_dir / "model.bin.sha256").unlink()

    ensure_model_dir(model_dir)

    assert hashlib.sha256((model_dir / "model.bin").read_bytes()).hexdigest() == MODEL_SHA256
