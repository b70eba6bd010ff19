"""Score a transcribed answer offline by its key points, vocabulary and length."""

import math
import re

from sessions_app.scoring import Score, ScoringError

COVERAGE_WEIGHT = 60
CLOSENESS_WEIGHT = 30
LENGTH_WEIGHT = 10

# A different good answer uses its own words, so sharing half of the model answer's
# vocabulary already earns full closeness marks; the percentage in the feedback stays raw.
FULL_CLOSENESS_SHARE = 0.5

MIN_WORDS = 30
MAX_WORDS = 300
# Rambling costs at most half the length marks: one point per 50 words over the limit.
WORDS_PER_LONG_PENALTY_POINT = 50
MIN_LONG_LENGTH_POINTS = LENGTH_WEIGHT / 2

NO_SPEECH_FEEDBACK = "No speech was transcribed, so there is nothing to score."

# Spoken fillers and all-purpose verbs join the usual list: they say nothing about the topic.
# Kept as text because some 190 quoted strings would bury the words.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves
    dont doesnt didnt isnt arent wasnt werent cant couldnt wont wouldnt shouldnt
    im ive id youre youve weve theyre theyve thats theres whats lets
    um uh er erm ah oh okay ok yeah yes well like really actually basically kind sort
    mean guess maybe thing things stuff lot lots get gets got getting make makes made making
    use uses used using
    """.split()  # noqa: SIM905
)

# Order matters: the first suffix that fits wins within each step.
PLURAL_SUFFIXES = (("ies", "y"), ("es", ""), ("s", ""))
VERB_SUFFIXES = (("ation", ""), ("ing", ""), ("ed", ""), ("ily", "y"), ("ly", ""))
UNSTRIPPABLE_ENDINGS = ("ss", "us", "is")
MIN_STEM_LENGTH = 3
UNDOUBLED_LETTERS = frozenset("bcdfgkmnprt")

WORD_RE = re.compile(r"[a-z0-9]+")


class KeyPointScorer:
    """Score answers by covered key points, shared vocabulary and answer length."""

    def score(
        self,
        *,
        question_text: str,
        model_answer: str,
        key_points: list[str],
        transcript: str,
    ) -> Score:
        """Return the transcript's score out of 100 with feedback explaining it."""
        key_point_stems = [(point, _key_point_stems(point)) for point in key_points]
        model_stems = set(_content_stems(model_answer))
        if not key_point_stems and not model_stems:
            raise ScoringError("The question has neither key points nor a model answer.")

        words = _words(transcript)
        if not words:
            return Score(score=0.0, feedback=[NO_SPEECH_FEEDBACK])
        transcript_stems = set(_content_stems(transcript))

        feedback = []
        if key_point_stems:
            covered, missing = [], []
            for point, stems in key_point_stems:
                (covered if _covers(transcript_stems, stems) else missing).append(point)
            coverage_share = len(covered) / len(key_point_stems)
            feedback.append(_coverage_sentence(covered, missing))
            feedback.append(f"Covers {len(covered)} of {len(key_point_stems)} key points.")
        if model_stems:
            closeness_share = len(model_stems & transcript_stems) / len(model_stems)
            closeness_credit = min(1.0, closeness_share / FULL_CLOSENESS_SHARE)
            feedback.append(f"Shares {closeness_share:.0%} of the model answer's key vocabulary.")
        # Without one reference the other carries its weight, so the scale stays 0 to 100.
        if not key_point_stems:
            coverage_share = closeness_credit
        if not model_stems:
            closeness_credit = coverage_share

        length_points, length_sentence = _length_points(len(words))
        if length_sentence:
            feedback.append(length_sentence)

        total = (
            COVERAGE_WEIGHT * coverage_share + CLOSENESS_WEIGHT * closeness_credit + length_points
        )
        return Score(score=round(min(100.0, max(0.0, total)), 1), feedback=feedback)


def _words(text: str) -> list[str]:
    # Dropping apostrophes keeps contractions whole ("don't" -> "dont") for the stopwords.
    return WORD_RE.findall(text.lower().replace("'", "").replace("\u2019", ""))


def _content_stems(text: str) -> list[str]:
    return [stem(word) for word in _words(text) if word not in STOPWORDS]


def _key_point_stems(key_point: str) -> set[str]:
    # A key point made only of stopwords would otherwise count as covered by any answer.
    return set(_content_stems(key_point)) or {stem(word) for word in _words(key_point)}


def _covers(transcript_stems: set[str], key_point_stems: set[str]) -> bool:
    needed = math.ceil(len(key_point_stems) / 2)
    return len(key_point_stems & transcript_stems) >= needed


def stem(word: str) -> str:
    """Return a light stem of a lowercase word so "indexes" and "indexing" meet "index"."""
    word = _strip_suffix(word, PLURAL_SUFFIXES)
    stripped = _strip_suffix(word, VERB_SUFFIXES)
    # "running" -> "runn" -> "run", but "added" -> "add" keeps its double letter.
    if (
        stripped != word
        and len(stripped) > 3
        and stripped[-1] == stripped[-2]
        and stripped[-1] in UNDOUBLED_LETTERS
    ):
        stripped = stripped[:-1]
    # A trailing "e" goes so that "cache" meets "caching" and "database" meets "databases".
    if len(stripped) > MIN_STEM_LENGTH and stripped.endswith("e"):
        stripped = stripped[:-1]
    return stripped


def _strip_suffix(word: str, suffixes: tuple[tuple[str, str], ...]) -> str:
    if word.endswith(UNSTRIPPABLE_ENDINGS):
        return word
    for suffix, replacement in suffixes:
        if word.endswith(suffix) and len(word) - len(suffix) >= MIN_STEM_LENGTH:
            return word[: -len(suffix)] + replacement
    return word


def _coverage_sentence(covered: list[str], missing: list[str]) -> str:
    if not missing:
        return f"Mentions {_join(covered)}."
    if not covered:
        return f"Does not mention {_join(missing, 'or')}."
    return f"Mentions {_join(covered)}; does not mention {_join(missing, 'or')}."


def _join(phrases: list[str], conjunction: str = "and") -> str:
    if len(phrases) == 1:
        return phrases[0]
    return f"{', '.join(phrases[:-1])} {conjunction} {phrases[-1]}"


def _length_points(word_count: int) -> tuple[float, str]:
    if word_count < MIN_WORDS:
        return (
            LENGTH_WEIGHT * word_count / MIN_WORDS,
            f"The answer is short ({word_count} words); aim for at least {MIN_WORDS}.",
        )
    if word_count > MAX_WORDS:
        penalty = (word_count - MAX_WORDS) / WORDS_PER_LONG_PENALTY_POINT
        return (
            max(MIN_LONG_LENGTH_POINTS, LENGTH_WEIGHT - penalty),
            f"The answer is long ({word_count} words); aim to make the point in under {MAX_WORDS}.",
        )
    return LENGTH_WEIGHT, ""
