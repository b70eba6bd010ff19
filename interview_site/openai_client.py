"""The OpenAI SDK client that the OpenAI transcriber and scorer share."""

import os

import openai
from django.conf import settings

_clients: dict[tuple, openai.OpenAI] = {}


def openai_client() -> openai.OpenAI | None:
    """Return this process's client for the configured API, or None without an API key."""
    if not settings.OPENAI_API_KEY:
        return None
    # Per process: the client's connection pool must not be shared across a fork.
    key = (
        os.getpid(),
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        settings.OPENAI_TIMEOUT_SECONDS,
    )
    if key not in _clients:
        _clients[key] = openai.OpenAI(
            api_key=settings.OPENAI_API_KEY,
            base_url=settings.OPENAI_BASE_URL,
            timeout=settings.OPENAI_TIMEOUT_SECONDS,
            max_retries=0,  # Retrying is the caller's decision (the job's backoff).
        )
    return _clients[key]


def api_message(error: openai.APIStatusError) -> str:
    """Return the API's own error message from a failed response."""
    # The SDK unwraps {"error": {...}} into ``body``; a proxy may answer with plain text.
    if isinstance(error.body, dict) and isinstance(error.body.get("message"), str):
        return error.body["message"]
    if isinstance(error.body, str) and error.body.strip():
        return error.body.strip()[:500]
    return error.message
