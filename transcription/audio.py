"""What an uploaded file really is: its container, told from its bytes, and its duration."""

from typing import BinaryIO

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


def duration_seconds(source: BinaryIO) -> float | None:
    """Return the audio's duration, or None if it cannot be told without decoding."""
    try:
        import av
    except ImportError:  # only the transcription workers need PyAV to decode
        return None
    position = source.tell()
    try:
        with av.open(source, mode="r") as container:
            if container.duration:
                return container.duration / 1_000_000
            # MediaRecorder's WebM has no duration in its header: read packet times instead.
            stream = container.streams.audio[0]
            end = 0.0
            for packet in container.demux(stream):
                if packet.pts is not None and packet.duration is not None:
                    end = max(end, float((packet.pts + packet.duration) * packet.time_base))
            return end or None
    except (av.error.FFmpegError, IndexError, ValueError):
        return None  # corrupt or truncated: the transcription job reports it
    finally:
        source.seek(position)
