"""The OpenAI SDK client that the OpenAI transcriber and scorer share."""

import os
import ssl
from functools import cache

import httpx2
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
            http_client=openai.DefaultHttpxClient(verify=tls_context()),
        )
    return _clients[key]


@cache
def tls_context() -> ssl.SSLContext:
    """Return the certificate store this process's clients verify the API against.

    The SDK's own client builds one each time, and loading the system's CA bundle is nearly
    all of a client's cost (25–80 ms of CPU). One context serves every client; qcluster makes
    it before it forks (``OpenAITranscriber.preload``), so a worker pays nothing for it. The
    same settings as the SDK's default (``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` are honoured).
    """
    return httpx2.create_ssl_context()


def api_message(error: openai.APIStatusError) -> str:
    """Return the API's own error message from a failed response."""
    # The SDK unwraps {"error": {...}} into ``body``; a proxy may answer with plain text.
    if isinstance(error.body, dict) and isinstance(error.body.get("message"), str):
        return error.body["message"]
    if isinstance(error.body, str) and error.body.strip():
        return error.body.strip()[:500]
    return error.message
