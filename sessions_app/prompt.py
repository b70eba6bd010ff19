"""The context given to the recogniser with an answer: the question and its topic's words.

Whisper reads a prompt as text that came before the audio, so spelling a term there
("idempotent", "PostgreSQL", "tuple") makes it likelier to be heard right. The prompt
holds the question's text and a vocabulary per topic, never the model answer or the key
points: a recogniser primed with them could "hear" coverage the candidate never gave.
Whether the prompt is used at all follows TRANSCRIPTION_PROMPT, set from the measurement
in bench/prompt_wer.py (README, "Technical words heard right").
"""

from django.conf import settings

from .models import Question

# Terms a candidate is likely to say on each topic, spelled as they are written. Whisper
# reads at most 224 tokens of prompt; each list stays well under that with the question.
TOPIC_VOCABULARY: dict[str, tuple[str, ...]] = {
    "behavioral": (
        "pull request",
        "code review",
        "deploy",
        "rollback",
        "incident",
        "postmortem",
        "stakeholders",
        "migration",
        "on-call",
        "retrospective",
        "MVP",
    ),
    "python": (
        "Python",
        "CPython",
        "list",
        "tuple",
        "immutable",
        "mutable",
        "hashable",
        "dict",
        "generator",
        "yield",
        "iterator",
        "lazily",
        "GIL",
        "threading",
        "multiprocessing",
        "asyncio",
        "I/O-bound",
        "CPU-bound",
    ),
    "web": (
        "HTTP",
        "HTTPS",
        "DNS",
        "TCP",
        "TLS handshake",
        "GET",
        "PUT",
        "DELETE",
        "POST",
        "idempotent",
        "idempotency",
        "CSRF",
        "cookie",
        "SameSite",
        "CORS",
        "CDN",
    ),
    "databases": (
        "SQL",
        "PostgreSQL",
        "index",
        "EXPLAIN ANALYZE",
        "query plan",
        "N+1",
        "ORM",
        "transaction",
        "ACID",
        "atomicity",
        "isolation",
        "durability",
        "commit",
        "rollback",
        "normalization",
        "denormalize",
        "foreign key",
        "schema",
    ),
    "system-design": (
        "base62",
        "hash",
        "key-value store",
        "Redis",
        "cache",
        "load balancer",
        "token bucket",
        "sliding window",
        "API gateway",
        "queue",
        "worker",
        "Celery",
        "Kubernetes",
        "webhook",
        "S3",
        "latency",
        "throughput",
        "sharding",
    ),
    "testing": (
        "unit test",
        "integration test",
        "end-to-end",
        "pytest",
        "fixture",
        "mock",
        "stub",
        "flaky",
        "race condition",
        "CI",
        "coverage",
        "regression",
        "deterministic",
    ),
}


def transcription_prompt(*, question: Question) -> str:
    """Return the prompt for an answer to ``question``, or "" when prompting is off."""
    if not settings.TRANSCRIPTION_PROMPT:
        return ""
    return prompt_text(question_text=question.text, category=question.category)


def prompt_text(*, question_text: str, category: str) -> str:
    """The prompt for a question's text and category (also used by bench/prompt_wer.py)."""
    vocabulary = TOPIC_VOCABULARY.get(category, ())
    prompt = question_text.strip()
    if vocabulary:
        prompt += f" Terms: {', '.join(vocabulary)}."
    return prompt
