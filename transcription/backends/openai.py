"""Transcribe answers with the OpenAI audio API (``TRANSCRIBER=openai``)."""

import openai
from django.conf import settings

from interview_site.openai_client import api_message, openai_client
from transcription.backends import Transcript, TranscriptionError

# Whisper's verbose_json names the detected language ("english"); answers store ISO-639-1.
LANGUAGE_CODES = {
    "arabic": "ar",
    "chinese": "zh",
    "czech": "cs",
    "danish": "da",
    "dutch": "nl",
    "english": "en",
    "finnish": "fi",
    "french": "fr",
    "german": "de",
    "greek": "el",
    "hebrew": "he",
    "hindi": "hi",
    "hungarian": "hu",
    "indonesian": "id",
    "italian": "it",
    "japanese": "ja",
    "korean": "ko",
    "norwegian": "no",
    "persian": "fa",
    "polish": "pl",
    "portuguese": "pt",
    "romanian": "ro",
    "russian": "ru",
    "spanish": "es",
    "swedish": "sv",
    "thai": "th",
    "turkish": "tr",
    "ukrainian": "uk",
    "vietnamese": "vi",
}

# The statuses the SDK itself would retry: worth another attempt by the job.
TRANSIENT_STATUSES = {408, 409, 429}
UNAVAILABLE = "Transcription is not available on this server right now; staff have been told."


class OpenAITranscriber:
    """Send answer audio to ``/audio/transcriptions`` and return its text and language."""

    def transcribe(
        self,
        audio: bytes,
        *,
        language: str | None,
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
        options = {"language": language} if language else {}
        try:
            response = client.audio.transcriptions.create(
                model=settings.OPENAI_TRANSCRIPTION_MODEL,
                file=(filename, audio, content_type),
                response_format="verbose_json",
                **options,
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
        return Transcript(text=text.strip(), language=language_code(detected) or language or "")


def language_code(name: str | None) -> str:
    """Return the ISO-639-1 code for a language the API reported, or "" if unknown."""
    name = (name or "").strip().lower()
    if len(name) == 2 and name.isalpha():
        return name
    return LANGUAGE_CODES.get(name, "")
