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
    """Raised by an engine; ``permanent`` errors are not worth retrying."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def get_transcriber():
    """Return this process's transcriber for ``settings.TRANSCRIBER``."""
    return _load(ENGINES.get(settings.TRANSCRIBER, settings.TRANSCRIBER))


@cache
def _load(path: str):
    return import_string(path)()
