"""The prompt (question + topic vocabulary) is kept only because it measured better.

bench/prompt_wer.py measures every sentence in four renditions (minutes of Whisper); its
committed result is re-scored here from the hypotheses it stored, the keep rule applied,
and the shipped default checked against the verdict. A small live run on the product engine
then checks the rule still holds on this machine.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from bench import prompt_wer
from sessions_app.models import Question
from sessions_app.prompt import prompt_text, transcription_prompt
from tests.support import ROOT
from transcription.backends import get_transcriber
from transcription.backends.local import loops_or_echoes

RESULT = prompt_wer.RESULTS / "prompt_wer.json"


@pytest.fixture(scope="module")
def measured():
    return json.loads(RESULT.read_text())


def test_committed_measurement_covers_enough_sentences_voices_and_speeds(measured):
    rows = measured["rows"]
    assert len({row["reference"] for row in rows}) >= 20
    assert len({row["voice"] for row in rows}) >= 2
    assert len({row["speed"] for row in rows}) >= 2
    bank = {q["slug"] for q in json.loads(prompt_wer.BANK.read_text())}
    assert {row["slug"] for row in rows} <= bank


def test_committed_figures_follow_from_the_stored_transcripts(measured):
    # Re-scored, not trusted: the table in the README is what these transcripts give.
    summary = prompt_wer.summarise(measured["rows"])

    assert summary["comparisons"] == measured["comparisons"]
    assert summary["by_rendition"] == measured["by_rendition"]
    assert summary["verdict"] == measured["verdict"]
    assert prompt_wer.markdown(measured) in (ROOT / "README.md").read_text()


def test_the_shipped_default_is_the_verdict_of_the_keep_rule(measured):
    verdict = prompt_wer.verdict(measured["comparisons"])
    for name, comparison in measured["comparisons"].items():
        kept = prompt_wer.keeps(comparison[name], comparison["none"])
        assert kept == (
            comparison[name]["term_wer"] < comparison["none"]["term_wer"]
            and comparison[name]["wer"] <= comparison["none"]["wer"]
        )
    # The defaults, as a deployment without these variables gets them.
    defaults = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; "
            "print(settings.TRANSCRIPTION_PROMPT, settings.WHISPER_HOTWORDS, "
            "settings.WHISPER_REPETITION_PENALTY)",
        ],
        cwd=ROOT,
        env={
            key: value
            for key, value in os.environ.items()
            if key not in {"TRANSCRIPTION_PROMPT", "WHISPER_HOTWORDS", "WHISPER_REPETITION_PENALTY"}
        }
        | {"DJANGO_SETTINGS_MODULE": "interview_site.settings", "DJANGO_DEBUG": "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    way = prompt_wer.WAYS[verdict]
    assert defaults == [str(way["prompt"]), str(way["hotwords"]), str(way["repetition_penalty"])]


# Sentences where the benchmark saw the prompt help in every rendition: a failure here means
# the engine or the prompt changed, not Whisper's run-to-run wobble on a borderline sentence
# (CTranslate2's int8 beam search is not bit-for-bit repeatable across thread counts).
LIVE_SENTENCES = (3, 5, 8, 12)


def test_the_rule_holds_live_on_a_few_sentences(spoken):
    # Four sentences, espeak-ng's default voice and speed, both ways, through the product
    # engine with its shipped settings, as a job would call it.
    engine = get_transcriber()
    bank = {q["slug"]: q for q in json.loads(prompt_wer.BANK.read_text())}
    rows = []
    for slug, reference, terms in (prompt_wer.SENTENCES[i] for i in LIVE_SENTENCES):
        audio = spoken(reference)
        question = bank[slug]
        prompt = prompt_text(question_text=question["text"], category=question["category"])
        for way, given in [("none", ""), ("initial_prompt", prompt)]:
            text = engine.transcribe(audio, language="en", prompt=given).text
            rows.append({"way": way, "reference": reference, "terms": terms, "hypothesis": text})

    without = prompt_wer.scores([row for row in rows if row["way"] == "none"])
    with_prompt = prompt_wer.scores([row for row in rows if row["way"] == "initial_prompt"])

    assert prompt_wer.keeps(with_prompt, without), (without, with_prompt, rows)


@pytest.mark.django_db
def test_the_prompt_holds_the_question_and_topic_words_never_the_model_answer_or_key_points(
    questions, settings
):
    settings.TRANSCRIPTION_PROMPT = True
    for question in Question.objects.all():
        prompt = transcription_prompt(question=question)

        assert prompt.startswith(question.text)
        for point in question.key_points:
            assert point.lower() not in prompt.lower(), (question.slug, point)
        # No run of four words from the model answer, beyond what the question itself says.
        assert not (_grams(prompt) & _grams(question.model_answer)) - _grams(question.text)
        assert len(prompt.split()) < 120  # Whisper reads at most 224 tokens of it.

    settings.TRANSCRIPTION_PROMPT = False
    assert transcription_prompt(question=question) == ""


def _grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_a_looping_or_echoing_prompted_transcript_is_recognised():
    # Transcripts the benchmark and an end-to-end run saw from the prompted base model.
    prompt = "What does it mean for an HTTP method to be idempotent, and why does it matter?"
    looped = (
        "I will put an index to the column and measure the query again. In order to deliver "
        "the query again, I will put an index to the column and measure the query again."
    )
    echoed = "POST is not idempotent. So, what does it mean for an HTTP method to be idempotent"

    assert loops_or_echoes(looped, prompt)
    assert loops_or_echoes(echoed, prompt)
    assert not loops_or_echoes("PUT and DELETE are idempotent, so a client can retry.", prompt)
    # Saying a few of the question's words back is an answer, not an echo.
    assert not loops_or_echoes("An HTTP method is idempotent when repeating it is safe.", prompt)
