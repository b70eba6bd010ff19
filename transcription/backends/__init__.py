"""Transcription engines behind one contract, chosen by ``settings.TRANSCRIBER``.

An engine has one method::

    transcribe(audio: bytes, *, language: str | None, prompt: str = "",
               content_type: str = ..., filename: str = ...) -> Transcript

``prompt`` is context for the recogniser (the question and its topic's vocabulary), never
text to copy into the transcript. It raises ``TranscriptionError`` with a ``permanent`` flag.
"""

from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

ENGINES = {
    "local": "transcription.backends.local.LocalWhisperTranscriber",
    "openai": "transcription.backends.openai.OpenAITranscriber",
}


# The language codes Whisper knows: faster-whisper's list, which the whisper-1 API shares.
# An engine class may narrow it with its own ``languages`` attribute.
WHISPER_LANGUAGES = frozenset(
    [
        "af",
        "am",
        "ar",
        "as",
        "az",
        "ba",
        "be",
        "bg",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fo",
        "fr",
        "gl",
        "gu",
        "ha",
        "haw",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "is",
        "it",
        "ja",
        "jw",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "la",
        "lb",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "oc",
        "pa",
        "pl",
        "ps",
        "pt",
        "ro",
        "ru",
        "sa",
        "sd",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "uk",
        "ur",
        "uz",
        "vi",
        "yi",
        "yo",
        "zh",
        "yue",
    ]
)


def engine_languages() -> frozenset[str]:
    """Return the language codes the configured engine accepts as a hint."""
    path = ENGINES.get(settings.TRANSCRIBER, settings.TRANSCRIBER)
    return frozenset(getattr(import_string(path), "languages", WHISPER_LANGUAGES))


@dataclass(frozen=True)
class Word:
    """One recognised word: its text, when it was said (seconds), how sure the engine was."""

    word: str
    start: float
    end: float
    probability: float | None  # None when the engine gives no confidence (OpenAI).

    def as_dict(self) -> dict:
        return {
            "word": self.word,
            "start": self.start,
            "end": self.end,
            "probability": self.probability,
        }


@dataclass(frozen=True)
class Transcript:
    """What an engine heard. ``words`` is empty when the engine gives no word timings."""

    text: str
    language: str
    words: list[Word] = field(default_factory=list)
    audio_seconds: float | None = None  # Length of the decoded audio, when known.


class TranscriptionError(Exception):
    """Raised by an engine; ``permanent`` errors are not worth retrying.

    The message is for operators (the log): it may name hosts, models, the API's own words.
    ``public`` is what the candidate is told: what happened and what to do, nothing internal.
    """

    def __init__(self, message: str, *, permanent: bool = False, public: str = ""):
        super().__init__(message)
        self.permanent = permanent
        self.public = public or (
            "This recording could not be transcribed; record the answer again."
            if permanent
            else "The transcription service is busy; it will be tried again shortly."
        )


def get_transcriber():
    """Return this process's transcriber for ``settings.TRANSCRIBER``."""
    return _load(ENGINES.get(settings.TRANSCRIBER, settings.TRANSCRIBER))


@cache
def _load(path: str):
    return import_string(path)()
