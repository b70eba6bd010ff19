"""Spoken answers for the benchmark: espeak-ng speech, encoded by ffmpeg, cached on disk."""

import hashlib
import itertools
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Interview-style sentences, spoken one after another until an answer is long enough.
SENTENCES = [
    "A process is an instance of a running program with its own memory space.",
    "Threads share the memory of the process that owns them, so they need locks.",
    "When I design a service I first ask which parts must be strongly consistent.",
    "An index speeds up reads at the cost of slower writes and more storage.",
    "I would measure the system before I try to optimize anything at all.",
    "On my last team we cut the scope and told the stakeholders early.",
    "A generator yields one value at a time, which saves a lot of memory.",
    "We rolled back the deploy and wrote a blameless review the next day.",
    "Caching helps when reads repeat, but invalidation is the hard part.",
    "I listened to their reasoning first and then we ran a small experiment.",
    "A queue decouples the web tier from slow work such as transcription.",
    "Retries need exponential backoff with jitter, or they make an outage worse.",
]
# espeak-ng at 150 words a minute speaks nearly three words a second (short words).
WORDS_PER_SECOND = 3.2
OPUS_BITRATE = "48k"  # what browsers' MediaRecorder produces for speech, roughly
CACHE_VERSION = "1"


@dataclass(frozen=True)
class Clip:
    path: Path
    seconds: float
    content_type: str

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def _run(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _speech_wav(seconds: float, offset: int, cache: Path) -> Path:
    """Return a wav of at least ``seconds`` of speech, starting at sentence ``offset``."""
    words_needed = seconds * WORDS_PER_SECOND
    text, words = [], 0
    for sentence in itertools.islice(itertools.cycle(SENTENCES), offset, None):
        text.append(sentence)
        words += len(sentence.split())
        if words >= words_needed:
            break
    spoken = " ".join(text)
    key = hashlib.sha1(f"{CACHE_VERSION}|{spoken}".encode()).hexdigest()[:16]
    wav = cache / f"speech-{key}.wav"
    if not wav.exists():
        partial = wav.with_suffix(".partial.wav")
        _run("espeak-ng", "-s", "150", "-w", str(partial), spoken)
        partial.rename(wav)
    return wav


def _encode(source: Path, target: Path, *args: str) -> Path:
    if not target.exists():
        partial = target.with_name(f".partial-{target.name}")
        # The speech repeats if it is shorter than the cut (-t) asks for.
        _run(
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-stream_loop",
            "-1",
            "-i",
            str(source),
            *args,
            str(partial),
        )
        partial.rename(target)
    return target


def answer_clips(cache: Path, durations: list[float]) -> list[Clip]:
    """Return one webm/opus answer of each duration (seconds), made once and cached."""
    cache.mkdir(parents=True, exist_ok=True)
    clips = []
    for index, seconds in enumerate(durations):
        wav = _speech_wav(seconds, index, cache)
        name = f"answer-{CACHE_VERSION}-{index:02d}-{seconds:.1f}s-{OPUS_BITRATE}.webm"
        webm = _encode(
            wav, cache / name, "-t", f"{seconds}", "-c:a", "libopus", "-b:a", OPUS_BITRATE
        )
        clips.append(Clip(webm, seconds, "audio/webm"))
    return clips


def large_clip(cache: Path, size: int) -> Clip:
    """Return a WAV of real speech just under ``size`` bytes: 96 kHz, 24-bit stereo."""
    bytes_per_second = 96_000 * 2 * 3
    seconds = round((size - 1024) / bytes_per_second, 2)
    wav = _speech_wav(seconds, 0, cache)
    name = f"large-{CACHE_VERSION}-{size}.wav"
    path = _encode(
        wav,
        cache / name,
        "-t",
        f"{seconds}",
        "-ar",
        "96000",
        "-ac",
        "2",
        "-c:a",
        "pcm_s24le",
    )
    return Clip(path, seconds, "audio/wav")
