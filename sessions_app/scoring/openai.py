"""Score answers with an OpenAI chat model (``SCORER=openai``)."""

import json
import math
from collections.abc import Sequence

import openai
from django.conf import settings

from interview_site.openai_client import api_message, openai_client
from sessions_app.scoring import Score, ScoringError

SYSTEM_PROMPT = """\
You grade spoken answers to job-interview questions. The candidate's answer was \
transcribed from speech, so ignore filler words, missing punctuation and small \
transcription mistakes.

Rubric for the score, a number from 0 to 100:
- Coverage (up to 60): how many of the key points the answer states correctly, \
in any wording.
- Accuracy (up to 25): nothing in the answer contradicts the model answer or is wrong.
- Clarity (up to 15): the answer is structured and gets to the point.
An empty, off-topic or wrong answer scores below 20.

Feedback: two to four short sentences addressed to the candidate ("You ..."), \
naming what was good and which key points were missing or wrong.

Reply with one JSON object and nothing else, in exactly this shape:
{"score": <number from 0 to 100>, "feedback": ["<sentence>", "<sentence>"]}"""

USER_MESSAGE = """\
Question:
{question_text}

Model answer:
{model_answer}

Key points:
{key_points}

Candidate's answer (transcript):
{transcript}"""


class OpenAIScorer:
    """Ask a chat model to grade a transcript against the question's key points."""

    def score(
        self,
        *,
        question_text: str,
        model_answer: str,
        key_points: Sequence[str],
        transcript: str,
    ) -> Score:
        """Return the model's score and feedback, raising ScoringError when it fails."""
        if not transcript.strip():
            return Score(0, ["No speech was transcribed."])
        client = openai_client()
        if client is None:
            raise ScoringError("OPENAI_API_KEY is not set, so the OpenAI scorer cannot run.")
        user_message = USER_MESSAGE.format(
            question_text=question_text.strip(),
            model_answer=model_answer.strip() or "(none)",
            key_points="\n".join(f"- {point}" for point in key_points) or "(none)",
            transcript=transcript.strip(),
        )
        try:
            completion = client.chat.completions.create(
                model=settings.OPENAI_SCORING_MODEL,
                response_format={"type": "json_object"},
                messages=[
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": user_message},
                ],
            )
        except openai.APIStatusError as error:
            raise ScoringError(
                f"OpenAI scoring failed with HTTP {error.status_code}: {api_message(error)}"
            ) from error
        except openai.APIConnectionError as error:
            raise ScoringError(
                f"OpenAI scoring could not reach the API: {error.message}"
            ) from error
        except openai.OpenAIError as error:
            raise ScoringError(f"OpenAI scoring failed: {error}") from error

        if not completion.choices or not completion.choices[0].message.content:
            raise ScoringError("OpenAI scoring returned no message content.")
        return parse_score(completion.choices[0].message.content)


def parse_score(content: str) -> Score:
    """Return the Score in the model's JSON reply, raising ScoringError if it is malformed."""
    try:
        reply = json.loads(content)
    except ValueError:
        raise ScoringError(f"OpenAI scoring reply is not JSON: {content[:200]!r}") from None
    if not isinstance(reply, dict):
        raise ScoringError(f"OpenAI scoring reply is not a JSON object: {content[:200]!r}")

    score = reply.get("score")
    # bool is an int subclass; true/false is not a score.
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise ScoringError(f"OpenAI scoring reply has no numeric score: {score!r}")
    if isinstance(score, float) and math.isnan(score):
        raise ScoringError("OpenAI scoring reply has NaN as its score.")

    feedback = reply.get("feedback")
    if not isinstance(feedback, list) or not all(isinstance(item, str) for item in feedback):
        raise ScoringError(f"OpenAI scoring reply feedback is not a list of strings: {feedback!r}")

    return Score(
        score=float(min(max(score, 0), 100)),
        feedback=[item.strip() for item in feedback if item.strip()],
    )
