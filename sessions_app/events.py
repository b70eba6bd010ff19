"""A session's live events: recorded once per change, then announced to every web process.

Each event is a row (its id is the stream's event id), written under the session's row
lock so a session's events commit in id order: a stream that has sent event N only ever
needs "the events after N", and a reconnecting client gets exactly what it missed.
The announcement only wakes the streams (PostgreSQL NOTIFY, or Redis PUBLISH when
REDIS_URL is set; on SQLite the web processes look at the table themselves): the rows
stay the truth, so a lost announcement delays an event, never loses it.
"""

import logging
from functools import cache, partial

from django.conf import settings
from django.db import connection, transaction

from transcription.models import Transcription

from .models import Answer, InterviewSession, SessionEvent
from .serializers import AnswerStatusSerializer

logger = logging.getLogger(__name__)


def session_key(session_id: int) -> str:
    return f"s{session_id}"


def user_key(user_id: int) -> str:
    return f"u{user_id}"


def event_record(
    *, session_id: int, name: str, data: dict, session_locked: bool = False
) -> SessionEvent | None:
    """Store one event of the session and wake its streams; None if the session is gone.

    ``session_locked``: the caller's transaction already holds the session's row lock.
    """
    # No savepoint inside a caller's transaction: an error fails the whole of it, as it
    # would anyway, and the write transaction is shorter by two statements.
    with transaction.atomic(savepoint=False):
        if not session_locked:
            locked = InterviewSession.objects.select_for_update().filter(pk=session_id)
            if not list(locked.values_list("pk", flat=True)):
                return None
        event = SessionEvent.objects.create(session_id=session_id, name=name, data=data)
        streams_wake(key=session_key(session_id))
    return event


def answer_change_record(
    *, answer: Answer, transcription, session_locked: bool = False
) -> SessionEvent | None:
    """Record an answer's new status, with the transcript or the reason it failed."""
    answer.transcription = transcription  # the row as that change committed it
    data = dict(AnswerStatusSerializer(answer).data)
    return event_record(
        session_id=answer.session_id,
        name=transcription.status,
        data=data,
        session_locked=session_locked,
    )


def answer_queued_data(*, question_id: int) -> dict:
    """The data of a new recording's event: what answer_change_record gives once it commits.

    Built before the upload's transaction (a new transcription's fields are all defaults),
    so that the serializer's work is not done while holding the transaction open.
    """
    answer = Answer(question_id=question_id, transcription=Transcription())
    return dict(AnswerStatusSerializer(answer).data)


def streams_wake(*, key: str) -> None:
    """Tell every web process that ``key`` (a session or a user) has news, once committed."""
    if settings.REDIS_URL:
        transaction.on_commit(partial(_publish, key))
    elif connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # delivered when the transaction commits
            cursor.execute("SELECT pg_notify(%s, %s)", [settings.EVENTS_CHANNEL, key])


def _publish(key: str) -> None:
    try:
        _redis().publish(settings.EVENTS_CHANNEL, key)
    except Exception as exc:  # the streams find the event at their next check
        logger.warning("Event announcement failed: %s: %s", key, exc)


@cache
def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
