"""Transcribe answers with the OpenAI audio API (``TRANSCRIBER=openai``)."""

import langcodes
import openai
from django.conf import settings

from interview_site.openai_client import api_message, openai_client, tls_context
from transcription.backends import Transcript, TranscriptionError, Word

# Models that answer only `json` or `text`: they reject `verbose_json` (and with it word
# timestamps) with a 400. Dated snapshots (gpt-4o-mini-transcribe-2025-03-20) share the prefix.
JSON_ONLY_MODEL_PREFIXES = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe")

# The statuses the SDK itself would retry: worth another attempt by the job.
TRANSIENT_STATUSES = {408, 409, 429}
UNAVAILABLE = "Transcription is not available on this server right now; staff have been told."


class OpenAITranscriber:
    """Send answer audio to ``/audio/transcriptions`` and return its text and language."""

    @staticmethod
    def preload() -> None:
        """Load, before the fork, what each job would otherwise load once per worker.

        The SDK is imported with this module, but not its audio API, which it imports on a
        client's first use (45 ms of CPU). Here: that, the CA bundle (``tls_context``), and
        langcodes' table of language names, which its first ``find`` reads (30 ms).
        """
        from openai.resources.audio import Audio  # noqa: F401 - what `client.audio` imports

        tls_context()
        language_code("english")

    def warm_up(self) -> None:
        """Make this process's client (the SDK is imported before the fork, with this module)."""
        openai_client()

    def transcribe(
        self,
        audio: bytes,
        *,
        language: str | None,
        prompt: str = "",
        content_type: str = "audio/webm",
        filename: str = "answer.webm",
    ) -> Transcript:
        """Return the transcript of ``audio``, raising TranscriptionError when the API fails."""
        client = openai_client()
        if client is None:
            raise TranscriptionError(
                "OPENAI_API_KEY is not set, so the OpenAI transcriber cannot run.",
                permanent=True,
                public=UNAVAILABLE,
            )
        model = settings.OPENAI_TRANSCRIPTION_MODEL
        options = {"language": language} if language else {}
        if prompt:
            options["prompt"] = prompt
        if verbose_json_supported(model):
            options["response_format"] = "verbose_json"
            options["timestamp_granularities"] = ["word", "segment"]
        else:
            options["response_format"] = "json"
        try:
            response = client.audio.transcriptions.create(
                model=model, file=(filename, audio, content_type), **options
            )
        except openai.APIStatusError as error:
            transient = error.status_code in TRANSIENT_STATUSES or error.status_code >= 500
            raise TranscriptionError(
                f"OpenAI transcription failed with HTTP {error.status_code}: {api_message(error)}",
                permanent=not transient,
            ) from error
        except openai.APIConnectionError as error:  # APITimeoutError is a subclass.
            raise TranscriptionError(
                f"OpenAI transcription could not reach the API: {error.message}",
                permanent=False,
                public="The transcription service could not be reached; it will be tried again.",
            ) from error
        except openai.OpenAIError as error:
            raise TranscriptionError(f"OpenAI transcription failed: {error}") from error

        text = getattr(response, "text", None)
        if not isinstance(text, str):
            raise TranscriptionError("OpenAI transcription response had no text.")
        detected = getattr(response, "language", None)
        duration = getattr(response, "duration", None)
        return Transcript(
            text=text.strip(),
            # json answers carry no language: the session's, when it named one.
            language=language_code(detected) or language or "",
            words=[
                Word(
                    word=word.word.strip(),
                    start=round(word.start, 2),
                    end=round(word.end, 2),
                    probability=None,  # The API gives timings, not confidences.
                )
                for word in getattr(response, "words", None) or ()
                if word.word.strip()
            ],
            audio_seconds=round(duration, 2) if isinstance(duration, int | float) else None,
        )


def verbose_json_supported(model: str) -> bool:
    """Whether ``model`` answers ``verbose_json`` (whisper-1 and Whisper-compatible servers)."""
    return not model.startswith(JSON_ONLY_MODEL_PREFIXES)


def language_code(name: str | None) -> str:
    """Return the code for a language the API reported ("english", "haitian creole"...).

    Whisper's verbose_json names the language in English; langcodes knows every one of the
    names Whisper can detect. Returns "" for a name it does not know.
    """
    name = (name or "").strip()
    if not name:
        return ""
    try:
        found = langcodes.get(name) if len(name) in (2, 3) and name.isalpha() else None
        if found is None or not found.is_valid():
            found = langcodes.find(name)
    except (LookupError, ValueError):
        return ""
    return found.language or ""
