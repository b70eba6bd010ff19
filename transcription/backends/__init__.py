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


def preload() -> None:
    """Import the configured engine and the libraries it needs, loading no model.

    Safe before a fork: qcluster calls it before it forks its workers, so each worker starts
    with the imports done (and shares their memory) instead of paying them on its first job.
    """
    engine_class = import_string(ENGINES.get(settings.TRANSCRIBER, settings.TRANSCRIBER))
    getattr(engine_class, "preload", lambda: None)()


def warm_up() -> None:
    """Make this process's engine ready for its first job (in a worker, after the fork)."""
    getattr(get_transcriber(), "warm_up", lambda: None)()
