"""Delivery feedback: pace, long pauses, fillers and unsure words, from the engine's word timings.

The pacing of the audio is known independently of Whisper: espeak-ng speaks a text whose
words we count, and ffmpeg's silencedetect finds where the speech starts and stops and how
long an inserted gap lasts.
"""

import re
import subprocess

import pytest

from sessions_app.delivery import COMFORTABLE_WPM, delivery_feedback
from transcription.backends import get_transcriber

PASSAGE = (
    "A generator in Python is a function that uses yield to produce values one at a time. "
    "It keeps its state between calls, so it can walk through a large file without loading "
    "everything into memory."
)
FILLED = "Um, so, like, I would use one when the data is big, uh, you know, endless."


def espeak(text: str, path, *, speed: int) -> None:
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(path), text], check=True)


def silences(path) -> list[tuple[float, float]]:
    """(start, end) of every stretch quieter than -40 dB for 0.3 s or more, by ffmpeg."""
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-i", str(path), "-af", "silencedetect=n=-40dB:d=0.3"]
        + ["-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    starts = [float(x) for x in re.findall(r"silence_start: ([\d.]+)", result.stderr)]
    ends = [float(x) for x in re.findall(r"silence_end: ([\d.]+)", result.stderr)]
    return list(zip(starts, ends, strict=False))


def duration(path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def speech_span(path) -> float:
    """Seconds from the first sound to the last, leading and trailing silence left out."""
    start, end = 0.0, duration(path)
    for silence_start, silence_end in silences(path):
        if silence_start < 0.05:
            start = silence_end
        elif silence_end > end - 0.05:
            end = silence_start
    return end - start


@pytest.fixture(scope="module")
def engine():
    return get_transcriber()


def feedback_for(engine, path) -> dict:
    transcript = engine.transcribe(path.read_bytes(), language="en")
    return delivery_feedback(
        words=[word.as_dict() for word in transcript.words],
        audio_seconds=transcript.audio_seconds,
    )


@pytest.mark.parametrize(("speed", "pace"), [(100, "comfortable"), (180, "fast")])
def test_words_per_minute_match_espeak_pacing_within_ten_percent(engine, tmp_path, speed, pace):
    path = tmp_path / f"passage-{speed}.wav"
    espeak(PASSAGE, path, speed=speed)
    true_wpm = len(PASSAGE.split()) / speech_span(path) * 60

    feedback = feedback_for(engine, path)

    assert abs(feedback["words_per_minute"] - true_wpm) <= 0.10 * true_wpm, (feedback, true_wpm)
    assert feedback["pace"] == pace
    assert feedback["long_pauses"] == []
    assert str(feedback["words_per_minute"]) in feedback["notes"][0]


def test_an_inserted_three_second_gap_is_found_and_kept_fillers_are_counted(engine, tmp_path):
    first, second, gap = tmp_path / "first.wav", tmp_path / "second.wav", tmp_path / "gap.wav"
    espeak(PASSAGE, first, speed=140)
    espeak(FILLED, second, speed=140)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(first)]
        + ["-f", "lavfi", "-t", "3", "-i", "anullsrc=r=22050:cl=mono", "-i", str(second)]
        + ["-filter_complex", "[0:a][1:a][2:a]concat=n=3:v=0:a=1", str(gap)],
        check=True,
    )
    # The silence the listener hears: the 3 s inserted plus espeak's own edges around it.
    [silent] = [s for s in silences(gap) if s[1] - s[0] > 2]
    heard_gap = silent[1] - silent[0]

    feedback = feedback_for(engine, gap)

    [pause] = feedback["long_pauses"]
    assert pause["after"].lower().startswith("memory")
    assert abs(pause["seconds"] - heard_gap) <= 0.5, (pause, heard_gap)
    # Whisper wrote every filler espeak said here; "so," opens a clause, it is no filler.
    assert feedback["fillers"] == {
        "total": 4,
        "counts": {"um": 1, "like": 1, "uh": 1, "you know": 1},
    }
    assert any("pause" in note for note in feedback["notes"])


# --- The pure function, on words made up for the case -------------------------


def timed(text: str, *, seconds_per_word: float = 0.4, probability: float = 0.9) -> list[dict]:
    return [
        {
            "word": word,
            "start": round(i * seconds_per_word, 2),
            "end": round((i + 1) * seconds_per_word - 0.05, 2),
            "probability": probability,
        }
        for i, word in enumerate(text.split())
    ]


def test_no_words_gives_no_delivery_feedback():
    assert delivery_feedback(words=[], audio_seconds=6.0) is None


def test_pace_verdicts_follow_the_stated_range():
    low, high = COMFORTABLE_WPM
    slow = delivery_feedback(
        words=timed("one two three four five six", seconds_per_word=1.0), audio_seconds=6
    )
    fast = delivery_feedback(
        words=timed("one two three four five six", seconds_per_word=0.25), audio_seconds=2
    )
    few = delivery_feedback(words=timed("yes"), audio_seconds=1)

    assert slow["pace"] == "slow"
    assert slow["words_per_minute"] < low
    assert fast["pace"] == "fast"
    assert fast["words_per_minute"] > high
    assert few["pace"] == "unknown"
    assert few["words_per_minute"] is None


def test_verbal_fillers_count_only_when_set_off_by_punctuation():
    words = timed("I like Python, and, like, it actually works. Basically, you know, it is fine")

    feedback = delivery_feedback(words=words, audio_seconds=10)

    assert feedback["fillers"]["counts"] == {"like": 1, "basically": 1, "you know": 1}


def test_low_confidence_words_are_listed_with_their_position():
    words = timed("the query uses an index")
    words[2]["probability"] = 0.2
    words[4]["probability"] = None  # An engine without confidences: never flagged.

    feedback = delivery_feedback(words=words, audio_seconds=3)

    assert feedback["low_confidence_words"] == [{"index": 2, "word": "uses", "probability": 0.2}]
