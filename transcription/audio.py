"""What an uploaded file really is: its container, told from its bytes, and its decoded length."""

import logging
from dataclasses import dataclass
from typing import BinaryIO

logger = logging.getLogger(__name__)

# The containers Whisper accepts, with the MIME type they are stored under.
CONTAINERS = {
    "webm": "audio/webm",  # WebM and Matroska share the EBML header
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "mp4": "audio/mp4",
    "flac": "audio/flac",
}
ACCEPTED = "WebM/Matroska, Ogg, WAV, MP3, MP4/M4A or FLAC"


def sniff_container(head: bytes) -> str | None:
    """Return the container named by the file's first bytes, or None if it is none we accept."""
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"ID3"):
        return "mp3"
    # An MPEG audio frame header: 11 sync bits, a valid version and layer III.
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 == 0x02:
        return "mp3"
    return None


class UnreadableAudio(Exception):
    """The file holds no decodable audio (or holds video); the message says what to do."""


@dataclass(frozen=True)
class DecodedLength:
    seconds: float  # of audio decoded, never more than the limit plus one frame
    over_limit: bool


def decoded_length(source: BinaryIO, *, limit_seconds: float) -> DecodedLength:
    """Decode the audio and measure it, stopping as soon as it passes ``limit_seconds``.

    The container's declared duration is never trusted: a header can say 1 s over hours
    of audio. Decoding stops at the limit, so a forged file costs at most that much work.
    Refuses a file without an audio stream or with a video stream (an image or a video
    in an ISO-BMFF or Matroska container passes the sniff of the first bytes).
    """
    import av

    position = source.tell()
    try:
        with av.open(source, mode="r") as container:
            if container.streams.video:
                raise UnreadableAudio("The file holds video; upload the answer as audio only.")
            if not container.streams.audio:
                raise UnreadableAudio("The file holds no audio; record the answer again.")
            stream = container.streams.audio[0]
            seconds, samples = 0.0, 0
            for frame in container.decode(stream):
                # Counted in samples, so no rounding drift pushes an answer over the limit.
                samples += frame.samples
                seconds = samples / (frame.sample_rate or stream.sample_rate or 48000)
                if seconds > limit_seconds:
                    return DecodedLength(seconds=seconds, over_limit=True)
    except (av.FFmpegError, OSError, ValueError, IndexError, EOFError) as exc:
        logger.info("Upload refused, audio not decodable: %s: %s", type(exc).__name__, exc)
        raise UnreadableAudio("The audio could not be decoded; record the answer again.") from None
    finally:
        source.seek(position)
    if seconds <= 0:
        raise UnreadableAudio("The file holds no audio to transcribe; record the answer again.")
    return DecodedLength(seconds=seconds, over_limit=False)
