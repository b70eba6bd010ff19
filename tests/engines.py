"""Stand-in transcription engines for tests that are about the pipeline, not about Whisper."""

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from harness import write_atomically
from transcription.backends import Transcript, TranscriptionError


class ScriptedTranscriber:
    """Answer with the text a test registered for the audio, and record every call."""

    # Text to return (or a whole Transcript), an error to raise, or a function of the audio
    # returning the text.
    script: dict[str, str | Transcript | Exception | Callable[[bytes], str]] = {}
    calls: list[str] = []
    prompts: list[str] = []  # The prompt of each call, in order.

    @classmethod
    def reset(cls):
        cls.script = {}
        cls.calls = []
        cls.prompts = []

    @classmethod
    def say(
        cls, audio: bytes, result: str | Transcript | Exception | Callable[[bytes], str]
    ) -> bytes:
        cls.script[hashlib.sha256(audio).hexdigest()] = result
        return audio

    def transcribe(
        self, audio: bytes, *, language, prompt="", content_type="", filename=""
    ) -> Transcript:
        digest = hashlib.sha256(audio).hexdigest()
        self.calls.append(digest)
        self.prompts.append(prompt)
        result = self.script.get(digest, "")
        if isinstance(result, Exception):
            raise result
        if isinstance(result, Transcript):
            return result
        if callable(result):
            result = result(audio)
        return Transcript(text=result, language=language or "en")


def release_blocking_engine(folder: Path, text: str) -> None:
    """Let ``BlockingTranscriber`` finish with ``text``: the file appears whole or not at all.

    ``write_text`` creates the file before it writes it, and an engine polling in between read
    an empty release (its transcript was then " N bytes").
    """
    write_atomically(folder / "release", text.encode())


class BlockingTranscriber:
    """Block until the test releases it (``release_blocking_engine``); works across processes."""

    def transcribe(
        self, audio: bytes, *, language, prompt="", content_type="", filename=""
    ) -> Transcript:
        folder = Path(os.environ["BLOCKING_ENGINE_DIR"])
        # The worker's pid, so that a test can kill the process mid-transcription.
        (folder / f"started-{filename}").write_text(f"{len(audio)} {os.getpid()}")
        release = folder / "release"
        deadline = time.monotonic() + 120
        while not release.exists():
            if time.monotonic() > deadline:
                raise TranscriptionError("the test never released the engine")
            time.sleep(0.05)
        return Transcript(text=f"{release.read_text()} {len(audio)} bytes", language="en")


class CrashingTranscriber:
    """Fail the way a bug would: an unexpected exception, with the transcript in hand.

    The transcript is $CRASHING_ENGINE_TRANSCRIPT, data from outside the code (as a real one
    is), so a test can tell whether it left the process.
    """

    def transcribe(
        self, audio: bytes, *, language, prompt="", content_type="", filename=""
    ) -> Transcript:
        text = os.environ["CRASHING_ENGINE_TRANSCRIPT"]  # a local under a name no filter knows
        raise RuntimeError(f"engine bug after producing {len(text)} characters")
