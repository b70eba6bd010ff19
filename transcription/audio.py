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
    seconds: float  # of audio measured, never more than the limit plus one packet
    over_limit: bool


# RFC 6716, section 3.1: an Opus packet's first byte (TOC) fixes its frame size and the frame
# count fixes the rest, so the samples a decoder outputs are known without decoding.
OPUS_RATE = 48_000
OPUS_LONGEST_PACKET = 5760  # 120 ms, the most one packet may hold
_SILK_FRAMES = (480, 960, 1920, 2880)  # configurations 0-11: 10, 20, 40, 60 ms
_HYBRID_FRAMES = (480, 960)  # 12-15: 10, 20 ms
_CELT_FRAMES = (120, 240, 480, 960)  # 16-31: 2.5, 5, 10, 20 ms


def opus_packet_samples(packet: bytes) -> int:
    """The samples (at 48 kHz) an Opus packet decodes to, read from its TOC byte.

    A packet too short to say counts as the longest a packet may be, so a malformed packet
    can only make an answer longer, never shorter, than what a decoder would produce.
    """
    if not packet:
        return OPUS_LONGEST_PACKET
    config, code = packet[0] >> 3, packet[0] & 0x03
    if config < 12:
        frame = _SILK_FRAMES[config & 0x03]
    elif config < 16:
        frame = _HYBRID_FRAMES[config & 0x01]
    else:
        frame = _CELT_FRAMES[config & 0x03]
    if code == 0:
        return frame
    if code in (1, 2):
        return 2 * frame
    if len(packet) < 2:
        return OPUS_LONGEST_PACKET
    return frame * (packet[1] & 0x3F)  # code 3: the frame count is in the next byte


def preload() -> None:
    """Import PyAV, which measures every job's audio (fork-safe: it starts no thread).

    With the stream classes that PyAV itself imports only when it first opens a file.
    """
    import av.audio.stream  # noqa: F401
    import av.subtitles.stream  # noqa: F401
    import av.video.stream  # noqa: F401


def probe(source: BinaryIO) -> float | None:
    """Refuse at once a file that is not an answer: no audio stream, a video stream, or audio
    whose first packets do not decode (an image or a video in an ISO-BMFF or Matroska
    container passes the sniff of the first bytes; so does a header followed by garbage).

    Its length is measured by the transcription job (``decoded_length``), not here: demuxing
    a whole answer re-takes the GIL for every packet, and among the web worker's other
    threads each re-take waits its turn, which made the upload wait grow with the load.
    Returns the duration the container declares, if any: an estimate, never a limit.
    """
    import av

    position = source.tell()
    try:
        with av.open(source, mode="r") as container:
            _audio_stream(container)
            if not any(True for _ in container.decode(audio=0)):
                raise UnreadableAudio(
                    "The file holds no audio to transcribe; record the answer again."
                )
            # Stops at the first frame: the generator is closed with the container.
            declared = container.duration / 1_000_000 if container.duration else None
    except (av.FFmpegError, OSError, ValueError, IndexError, EOFError) as exc:
        logger.info("Upload refused, audio not decodable: %s: %s", type(exc).__name__, exc)
        raise UnreadableAudio("The audio could not be decoded; record the answer again.") from None
    finally:
        source.seek(position)
    return declared


def _audio_stream(container):
    if container.streams.video:
        raise UnreadableAudio("The file holds video; upload the answer as audio only.")
    if not container.streams.audio:
        raise UnreadableAudio("The file holds no audio; record the answer again.")
    return container.streams.audio[0]


def decoded_length(source: BinaryIO, *, limit_seconds: float) -> DecodedLength:
    """Measure the audio a decoder would produce, stopping as soon as it passes the limit.

    The container's declared duration (and its timestamps) are never trusted: a header can
    say 1 s over hours of audio. Opus (what browsers record) is measured from each packet's
    TOC byte, which fixes what the decoder outputs, after decoding the first packet to show
    the stream is Opus at all: a tenth of the cost of decoding it. Other codecs are decoded.
    Either way measuring stops at the limit, so a forged file costs at most that much work.
    Refuses a file without an audio stream or with a video stream (an image or a video
    in an ISO-BMFF or Matroska container passes the sniff of the first bytes).
    """
    import av

    position = source.tell()
    try:
        with av.open(source, mode="r") as container:
            stream = _audio_stream(container)
            if stream.codec_context.name == "opus":
                length = _opus_length(container, stream, limit_seconds)
            else:
                length = _decoded_length(container, stream, limit_seconds)
    except (av.FFmpegError, OSError, ValueError, IndexError, EOFError) as exc:
        logger.info("Upload refused, audio not decodable: %s: %s", type(exc).__name__, exc)
        raise UnreadableAudio("The audio could not be decoded; record the answer again.") from None
    finally:
        source.seek(position)
    if length.seconds <= 0:
        raise UnreadableAudio("The file holds no audio to transcribe; record the answer again.")
    return length


def _opus_length(container, stream, limit_seconds: float) -> DecodedLength:
    samples, decoded_one = 0, False
    for packet in container.demux(stream):
        if packet.size == 0 and packet.pts is None:
            continue  # the demuxer's end-of-stream marker, not a packet of the file
        if not decoded_one and packet.size:
            decoded_one = bool(stream.codec_context.decode(packet))
        samples += opus_packet_samples(bytes(packet))
        if samples / OPUS_RATE > limit_seconds:
            return DecodedLength(seconds=samples / OPUS_RATE, over_limit=True)
    if not decoded_one:
        raise UnreadableAudio("The audio could not be decoded; record the answer again.")
    return DecodedLength(seconds=samples / OPUS_RATE, over_limit=False)


def _decoded_length(container, stream, limit_seconds: float) -> DecodedLength:
    seconds, samples = 0.0, 0
    for frame in container.decode(stream):
        # Counted in samples, so no rounding drift pushes an answer over the limit.
        samples += frame.samples
        seconds = samples / (frame.sample_rate or stream.sample_rate or 48000)
        if seconds > limit_seconds:
            return DecodedLength(seconds=seconds, over_limit=True)
    return DecodedLength(seconds=seconds, over_limit=False)
