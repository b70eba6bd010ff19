"""The default engine: faster-whisper on this CPU, with the model from the two PyPI packages."""

import hashlib

import pytest

from tests import support
from tests.support import word_error_rate
from transcription.backends import TranscriptionError, get_transcriber
from transcription.backends.local import (
    MODEL_SHA256,
    LocalWhisperTranscriber,
    ensure_model_dir,
    model_path,
)

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


# --- Voice activity, word timings, settings ---------------------------------


@pytest.fixture(scope="module")
def silent_and_noisy(tmp_path_factory):
    """Six seconds of digital silence, and six of loud pink noise, made by ffmpeg."""
    return support.no_speech(tmp_path_factory.mktemp("no-speech"), sample_rate=16000, seed=7)


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_silence_or_noise_alone_gives_an_empty_transcript_not_a_hallucination(
    engine, silent_and_noisy, kind
):
    transcript = engine.transcribe(silent_and_noisy[kind], language=None)

    assert transcript.text == ""
    assert transcript.words == []
    assert transcript.language == ""  # Whisper's guess on no speech is not a detection.
    assert transcript.audio_seconds == pytest.approx(6.0, abs=0.1)


def test_without_the_voice_filter_whisper_hallucinates_on_silence(
    engine, silent_and_noisy, settings
):
    # Why WHISPER_VAD is on by default: the stock "You" / "Thank you." on pure silence.
    settings.WHISPER_VAD = False

    # In an English session. Left to detect the language of silence, Whisper's guess is a
    # toss-up that differs between machines (Welsh at 0.35 on one), and for some guesses
    # its no-speech rule drops the segment; told English, it says "You" on every one.
    transcript = engine.transcribe(silent_and_noisy["silence"], language="en")

    assert transcript.text != ""


def test_words_come_with_timings_and_probabilities_in_order(engine, spoken):
    transcript = engine.transcribe(spoken(SENTENCES[0], "webm"), language="en")

    assert [word.word for word in transcript.words] == transcript.text.split()
    starts = [word.start for word in transcript.words]
    assert starts == sorted(starts)
    assert all(word.start <= word.end <= transcript.audio_seconds for word in transcript.words)
    assert all(0 <= word.probability <= 1 for word in transcript.words)
    assert min(word.probability for word in transcript.words) < 1


def test_whisper_model_names_another_ctranslate2_model_and_it_is_never_written(
    spoken, settings, tmp_path
):
    shipped = ensure_model_dir(tmp_path / "shipped")
    operator = tmp_path / "operator-model"
    operator.mkdir()
    for path in shipped.iterdir():
        if path.name in {"model.bin", "config.json", "tokenizer.json", "vocabulary.json"}:
            (operator / path.name).symlink_to(path)
    before = {path.name: path.lstat().st_mtime_ns for path in operator.iterdir()}
    operator.chmod(0o555)  # Nothing may be added to it either.
    settings.WHISPER_MODEL = str(operator)

    try:
        # The three sentences in one recording, measured as the other accuracy tests do:
        # one short sentence's word error rate swings with the CPU's int8 kernels.
        reference = " ".join(SENTENCES)
        transcript = LocalWhisperTranscriber().transcribe(spoken(reference), language="en")
    finally:
        operator.chmod(0o755)
    assert word_error_rate(reference, transcript.text) <= 0.25, transcript.text
    assert {path.name: path.lstat().st_mtime_ns for path in operator.iterdir()} == before
    assert model_path() == operator


def test_a_whisper_model_folder_without_a_model_is_a_permanent_error_naming_the_setting(
    settings, tmp_path
):
    settings.WHISPER_MODEL = str(tmp_path)

    with pytest.raises(TranscriptionError, match="WHISPER_MODEL") as raised:
        LocalWhisperTranscriber().transcribe(b"audio", language="en")

    assert raised.value.permanent
    assert list(tmp_path.iterdir()) == []
