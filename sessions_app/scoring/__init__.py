"""Answer scorers behind one contract, chosen by ``settings.SCORER``."""

from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

SCORERS = {
    "local": "sessions_app.scoring.local.KeyPointScorer",
    "openai": "sessions_app.scoring.openai.OpenAIScorer",
}


@dataclass(frozen=True)
class Score:
    score: float  # 0 to 100
    feedback: list[str] = field(default_factory=list)


class ScoringError(Exception):
    """Raised by a scorer that could not score an answer."""


def get_scorer():
    """Return this process's scorer for ``settings.SCORER``."""
    return _load(SCORERS.get(settings.SCORER, settings.SCORER))


@cache
def _load(path: str):
    return import_string(path)()
