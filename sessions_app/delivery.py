"""How an answer was delivered: pace, pauses, filler words, words heard with low confidence.

A pure function of the engine's words (``{"word", "start", "end", "probability"}``, seconds)
and the recording's length, so the same transcript always gets the same feedback. It is
reported beside the content score and never changes it: a fast talker who covers the key
points has still covered them.
"""

import re

# Conversational English runs at about 120-160 words per minute; an interview answer
# gains from the slower half (room to think, easier to follow). Outside this range the
# feedback says so.
COMFORTABLE_WPM = (110, 160)
LONG_PAUSE_SECONDS = 2.0
# Below this, the engine was unsure of the word: a "missed" key point may be a mishearing.
LOW_CONFIDENCE = 0.5
# Fewer words than this give no meaningful pace.
MIN_WORDS_FOR_PACE = 5

# Sounds that are fillers wherever they appear ("erm" and "er" are how Whisper often writes
# "um" and "uh"). Whisper leaves most of them out of its transcripts, so counts are a floor.
FILLER_SOUNDS = {"um", "umm", "uh", "uhh", "uhm", "erm", "er", "err", "ah", "hmm", "hm", "mm"}
# Words that are fillers only when set off by punctuation ("So, like, ...", "..., you know."):
# "I like Python" is not a filler.
FILLER_PHRASES = (("you", "know"), ("i", "mean"), ("like",), ("basically",), ("actually",))


def delivery_feedback(*, words: list[dict], audio_seconds: float | None) -> dict | None:
    """Return the delivery figures and their explanations, or None with no word timings."""
    if not words:
        return None
    tokens = [_normalise(word["word"]) for word in words]
    count = sum(1 for token in tokens if token)
    speaking_seconds = max(words[-1]["end"] - words[0]["start"], 0.0)

    wpm = None
    if count >= MIN_WORDS_FOR_PACE and speaking_seconds > 0:
        wpm = round(count / speaking_seconds * 60)
    low, high = COMFORTABLE_WPM
    if wpm is None:
        pace, pace_note = "unknown", "Too few words to judge your pace."
    elif wpm < low:
        pace = "slow"
        pace_note = (
            f"{wpm} words per minute, below the comfortable {low}-{high}: "
            "keep going between points; a steady pace sounds more confident."
        )
    elif wpm > high:
        pace = "fast"
        pace_note = (
            f"{wpm} words per minute, above the comfortable {low}-{high}: "
            "slow down so the interviewer can follow each point."
        )
    else:
        pace = "comfortable"
        pace_note = f"{wpm} words per minute, within the comfortable {low}-{high}."

    pauses = [
        {
            "after": words[i]["word"],
            "start": words[i]["end"],
            "seconds": round(words[i + 1]["start"] - words[i]["end"], 1),
        }
        for i in range(len(words) - 1)
        if words[i + 1]["start"] - words[i]["end"] > LONG_PAUSE_SECONDS
    ]
    fillers = _fillers(words, tokens)
    low_confidence = [
        {"index": i, "word": word["word"], "probability": word["probability"]}
        for i, word in enumerate(words)
        if word.get("probability") is not None and word["probability"] < LOW_CONFIDENCE
    ]

    notes = [pace_note]
    if pauses:
        longest = max(pause["seconds"] for pause in pauses)
        notes.append(
            f"{len(pauses)} pause(s) longer than {LONG_PAUSE_SECONDS:g} s (longest {longest:g} s):"
            " a short pause is fine; a long one can read as being stuck."
        )
    if fillers["total"]:
        notes.append(
            f"{fillers['total']} filler word(s) heard ({', '.join(sorted(fillers['counts']))})."
            " The recogniser drops many fillers, so there may have been more."
        )
    if low_confidence:
        notes.append(
            f"{len(low_confidence)} word(s) heard with low confidence (highlighted): "
            "if a key point was missed there, it may have been misheard, not left out."
        )
    return {
        "speaking_seconds": round(speaking_seconds, 1),
        "audio_seconds": round(audio_seconds, 1) if audio_seconds is not None else None,
        "word_count": count,
        "words_per_minute": wpm,
        "comfortable_wpm": list(COMFORTABLE_WPM),
        "pace": pace,
        "long_pauses": pauses,
        "fillers": fillers,
        "low_confidence_words": low_confidence,
        "low_confidence_below": LOW_CONFIDENCE,
        "notes": notes,
    }


def _normalise(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def _ends_clause(word: str) -> bool:
    return word.rstrip()[-1:] in {",", ".", "?", "!", ";", ":"}


def _fillers(words: list[dict], tokens: list[str]) -> dict:
    counts: dict[str, int] = {}
    i = 0
    while i < len(tokens):
        if tokens[i] in FILLER_SOUNDS:
            counts[tokens[i]] = counts.get(tokens[i], 0) + 1
            i += 1
            continue
        for phrase in FILLER_PHRASES:
            end = i + len(phrase)
            if tuple(tokens[i:end]) != phrase:
                continue
            # Set off by punctuation on both sides (or the answer's start and end).
            before = i == 0 or _ends_clause(words[i - 1]["word"])
            after = end == len(tokens) or _ends_clause(words[end - 1]["word"])
            if before and after:
                name = " ".join(phrase)
                counts[name] = counts.get(name, 0) + 1
                i = end - 1
                break
        i += 1
    return {"total": sum(counts.values()), "counts": counts}
