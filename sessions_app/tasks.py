"""Django-Q jobs of the interview: thin, each calls one service."""

from django.conf import settings

from . import services


def sessions_expire() -> str:
    """Delete sessions past TRANSCRIPT_RETENTION_DAYS (a Django-Q schedule, hourly)."""
    if not settings.TRANSCRIPT_RETENTION_DAYS:
        return "retention off (TRANSCRIPT_RETENTION_DAYS is not set)"
    return f"deleted {services.sessions_expire()} expired sessions"
