"""Transcription engines behind one contract, chosen by ``settings.TRANSCRIBER``."""

from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

ENGINES = {
    "local": "transcription.backends.local.LocalWhisperTranscriber",
    "openai": "transcription.backends.openai.OpenAITranscriber",
}


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str


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
