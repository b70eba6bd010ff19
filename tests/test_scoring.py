"""Tests for the offline key-point scorer and the question bank it scores against."""

import json
from collections import Counter
from pathlib import Path

import pytest
from django.utils.module_loading import import_string

from sessions_app.scoring import SCORERS, Score, ScoringError
from sessions_app.scoring.local import KeyPointScorer

QUESTION_BANK = Path(__file__).resolve().parent.parent / "sessions_app" / "question_bank.json"
CATEGORIES = {"behavioral", "python", "web", "databases", "system-design", "testing"}

QUESTION = "A page is slow because of a database query. How do you fix it?"
MODEL_ANSWER = (
    "I would measure before optimizing, because the slow part is often somewhere else. "
    "Then I would read the query plan and look for sequential scans on big tables. "
    "Usually the fix is to add an index on the filtered columns, and if the data rarely "
    "changes I would use a cache in front of the database."
)
KEY_POINTS = ["add an index", "measure before optimizing", "use a cache"]

COVERS_EVERYTHING = (
    "First I would measure where the time goes before optimizing anything at all. "
    "Then I would add an index on the column in the where clause, and if the same "
    "result is requested all the time I would put a cache in front of the query."
)
COVERS_NOTHING = (
    "I would rewrite the whole page in a faster language, buy a bigger server and ask "
    "the designers to remove some of the pictures so that the browser has less to draw."
)


def score(transcript: str, key_points: list[str] = KEY_POINTS) -> Score:
    return KeyPointScorer().score(
        question_text=QUESTION,
        model_answer=MODEL_ANSWER,
        key_points=key_points,
        transcript=transcript,
    )


def load_question_bank() -> list[dict]:
    return json.loads(QUESTION_BANK.read_text())


def test_answer_covering_every_key_point_scores_higher_than_one_covering_none():
    good = score(COVERS_EVERYTHING)
    bad = score(COVERS_NOTHING)

    assert "Covers 3 of 3 key points." in good.feedback
    assert "Covers 0 of 3 key points." in bad.feedback
    assert good.score >= 70
    assert bad.score <= 20


def test_feedback_names_covered_and_missing_key_points():
    result = score(
        "I'd measure the page first, before optimizing anything, and then add an index on "
        "the column we filter by. That usually fixes it without any other changes at all."
    )

    assert (
        "Mentions add an index and measure before optimizing; does not mention use a cache."
        in result.feedback
    )
    assert "Covers 2 of 3 key points." in result.feedback


def test_feedback_names_missing_key_points():
    result = score(COVERS_NOTHING)

    assert (
        "Does not mention add an index, measure before optimizing or use a cache."
        in result.feedback
    )


def test_feedback_reports_share_of_model_answer_vocabulary():
    result = score(MODEL_ANSWER)

    assert "Shares 100% of the model answer's key vocabulary." in result.feedback
    assert "Shares 0% of the model answer's key vocabulary." in score(COVERS_NOTHING).feedback


@pytest.mark.parametrize("transcript", ["", "   \n\t  "])
def test_empty_transcript_scores_zero(transcript):
    result = score(transcript)

    assert result.score == 0
    assert result.feedback == ["No speech was transcribed, so there is nothing to score."]


def test_same_input_gives_same_score():
    first = score(COVERS_EVERYTHING)
    second = KeyPointScorer().score(
        question_text=QUESTION,
        model_answer=MODEL_ANSWER,
        key_points=list(KEY_POINTS),
        transcript=COVERS_EVERYTHING,
    )

    assert first == second


def test_plural_and_ing_forms_count_as_the_key_point():
    result = score(
        "Adding indexes helps, and so does caching the results. "
        "Measuring comes before optimization."
    )

    assert "Covers 3 of 3 key points." in result.feedback


def test_key_point_needs_at_least_half_of_its_content_words():
    # "read the query plan" has three content words, so two of them must be said.
    key_points = ["read the query plan"]

    assert "Covers 0 of 1 key points." in score("I'd look at the plan.", key_points).feedback
    assert "Covers 1 of 1 key points." in score("I'd look at the query plan.", key_points).feedback


def test_filler_and_common_words_do_not_cover_a_key_point():
    result = score("Um, so I'd use it, like, you know, and make it before the thing.")

    assert "Covers 0 of 3 key points." in result.feedback


def test_short_answer_is_told_to_say_more():
    answer = "Add an index and use a cache."
    short = score(answer)
    # Only stopwords are added, so coverage and vocabulary stay the same and length alone differs.
    same_content_at_length = score(answer + " And so that is what I would do." * 4)

    assert "The answer is short (7 words); aim for at least 30." in short.feedback
    assert same_content_at_length.score - short.score >= 5


def test_long_rambling_answer_loses_a_little_for_length():
    rambling = COVERS_EVERYTHING + " To repeat myself once more." * 60
    focused = score(COVERS_EVERYTHING)
    padded = score(rambling)

    assert any(sentence.startswith("The answer is long (") for sentence in padded.feedback)
    assert focused.score - 5 <= padded.score < focused.score


def test_score_is_rounded_to_one_decimal_within_zero_and_hundred():
    for transcript in (MODEL_ANSWER, COVERS_EVERYTHING, COVERS_NOTHING, "Index."):
        result = score(transcript)

        assert 0 <= result.score <= 100
        assert result.score == round(result.score, 1)


def test_question_without_key_points_is_scored_on_the_model_answer():
    assert score(MODEL_ANSWER, key_points=[]).score == 100
    assert score(COVERS_NOTHING, key_points=[]).score <= 20


def test_question_without_key_points_or_model_answer_cannot_be_scored():
    with pytest.raises(ScoringError):
        KeyPointScorer().score(
            question_text=QUESTION, model_answer=" ", key_points=[], transcript="Hello."
        )


def test_local_scorer_is_registered_under_local():
    assert import_string(SCORERS["local"]) is KeyPointScorer


def test_question_bank_entries_are_complete_and_score_well_against_their_own_model_answer():
    bank = load_question_bank()
    scorer = KeyPointScorer()

    assert len(bank) >= 14
    assert len({entry["slug"] for entry in bank}) == len(bank)
    assert all(count >= 2 for count in Counter(entry["category"] for entry in bank).values())
    assert {entry["category"] for entry in bank} == CATEGORIES
    for entry in bank:
        assert set(entry) == {"slug", "category", "text", "model_answer", "key_points"}
        assert entry["slug"] == entry["slug"].lower().strip("-")
        assert all(part.isalnum() for part in entry["slug"].split("-")), entry["slug"]
        assert entry["text"].strip().endswith(("?", ".")), entry["slug"]
        assert 80 <= len(entry["model_answer"].split()) <= 150, entry["slug"]
        assert 3 <= len(entry["key_points"]) <= 5, entry["slug"]
        assert all(2 <= len(point.split()) <= 6 for point in entry["key_points"]), entry["slug"]

        result = scorer.score(
            question_text=entry["text"],
            model_answer=entry["model_answer"],
            key_points=entry["key_points"],
            transcript=entry["model_answer"],
        )

        assert result.score >= 80, (entry["slug"], result.feedback)


def test_question_bank_key_points_are_not_covered_by_answers_to_other_questions():
    bank = load_question_bank()
    scorer = KeyPointScorer()

    for entry in bank:
        for other in bank:
            if other is entry:
                continue
            result = scorer.score(
                question_text=entry["text"],
                model_answer=entry["model_answer"],
                key_points=entry["key_points"],
                transcript=other["model_answer"],
            )

            assert result.score < 60, (entry["slug"], other["slug"], result.feedback)
