"""Error tracking with sentry-sdk: unexpected errors reach someone, private data does not."""

import logging
import re

from django.conf import settings

FILTERED = "[Filtered]"
# Keys whose values never leave the process: what a candidate said, their audio, credentials.
_PRIVATE_KEY = re.compile(
    r"transcript|audio|token|authorization|cookie|password|secret|api[_-]?key|session|csrf|words",
    re.IGNORECASE,
)
# Identifiers we do want on an event, although their names match the pattern above.
_ALLOWED_KEYS = {"session_id", "transcription_id", "answer_id"}


def sentry_init(*, dsn: str, environment: str) -> None:
    """Send unhandled errors and ERROR log records (with their exception) to ``dsn``."""
    # Imported here: without a DSN, no process pays for importing the SDK.
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[
            DjangoIntegration(),
            # The job catches its own exceptions and logs them: an ERROR record is an event.
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        send_default_pii=False,
        # Stack locals hold audio bytes and transcript text; request bodies hold the audio.
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
    )


def scrub_event(event, hint):
    return _scrub(event)


def scrub_breadcrumb(crumb, hint):
    return _scrub(crumb)


def _scrub(value):
    """Replace the value of every private-looking key, at any depth."""
    if isinstance(value, dict):
        return {
            key: FILTERED
            if isinstance(key, str) and key not in _ALLOWED_KEYS and _PRIVATE_KEY.search(key)
            else _scrub(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value


def job_context(**context) -> None:
    """Tag the errors of the job running in this worker with ids (never content)."""
    if not settings.SENTRY_DSN:
        return
    import sentry_sdk

    context = {key: str(value) for key, value in context.items() if value not in (None, "")}
    scope = sentry_sdk.get_isolation_scope()
    for key, value in context.items():
        scope.set_tag(key, value)
    scope.set_context("job", context)


def job_context_clear() -> None:
    if not settings.SENTRY_DSN:
        return
    import sentry_sdk

    sentry_sdk.get_isolation_scope().clear()


def tag_request(request_id: str) -> None:
    if settings.SENTRY_DSN:
        import sentry_sdk

        sentry_sdk.get_isolation_scope().set_tag("request_id", request_id)
