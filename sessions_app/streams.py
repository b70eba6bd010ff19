"""The body of GET /api/sessions/{id}/events: Server-Sent Events read from the session's rows.

Under ASGI (the Procfile's web process) a stream is an async generator that waits on the
process's hub (event_hub.py) and holds no thread. Under WSGI (``runserver``, the tests'
live server) it is a plain generator that looks at the table every EVENTS_POLL_MS.

Either way a stream first sends every event after the client's Last-Event-ID (all of them
on a first connection), then each new one; it ends when the session is deleted or the
credentials it was opened with are revoked (token deleted, login session ended), and after
EVENTS_MAX_SECONDS (the client reconnects with Last-Event-ID and misses nothing).
"""

import asyncio
import json
import time
from dataclasses import dataclass
from importlib import import_module

from asgiref.sync import sync_to_async
from django.conf import settings

from .events import session_key, user_key
from .models import InterviewSession, SessionEvent

BATCH = 200
RECONNECT_MS = 1000  # the client's wait before reconnecting (the stream's "retry:" field)


@dataclass(frozen=True)
class StreamAccess:
    """What the stream was opened with, checked again while it is open."""

    session_id: int
    user_id: int
    token_key: str | None = None  # token authentication
    login_session_key: str | None = None  # the browser's login session

    def still_valid(self) -> bool:
        owned = InterviewSession.objects.filter(pk=self.session_id, user_id=self.user_id)
        if self.token_key is not None:
            return owned.filter(user__auth_token__key=self.token_key).exists()
        if not owned.exists():
            return False
        if self.login_session_key is not None:
            store = import_module(settings.SESSION_ENGINE).SessionStore
            return store().exists(self.login_session_key)
        return True


CHUNK = 500


def invalid_accesses(accesses: list[StreamAccess]) -> set[StreamAccess]:
    """Those of the open streams whose session or credentials are gone, in a few queries."""
    from rest_framework.authtoken.models import Token

    def existing(queryset, field: str, values: set, *also: str) -> set:
        values, found = list(values), set()
        for start in range(0, len(values), CHUNK):
            rows = queryset.filter(**{f"{field}__in": values[start : start + CHUNK]})
            found |= set(rows.values_list(field, *also))
        return found

    sessions = existing(InterviewSession.objects, "pk", {a.session_id for a in accesses}, "user_id")
    tokens = existing(
        Token.objects, "key", {a.token_key for a in accesses if a.token_key}, "user_id"
    )
    logins = {a.login_session_key for a in accesses if a.login_session_key}
    store = import_module(settings.SESSION_ENGINE).SessionStore
    live_logins = {key for key in logins if store().exists(key)}
    return {
        access
        for access in accesses
        if (access.session_id, access.user_id) not in sessions
        or (access.token_key and (access.token_key, access.user_id) not in tokens)
        or (access.login_session_key and access.login_session_key not in live_logins)
    }


def _read(access: StreamAccess, after: int) -> list[SessionEvent] | None:
    """The events after ``after``; None when the stream must close."""
    if not access.still_valid():
        return None
    return list(SessionEvent.objects.after(access.session_id, after)[:BATCH])


def event_text(event: SessionEvent) -> str:
    data = json.dumps(event.data, separators=(",", ":"))
    return f"id: {event.pk}\nevent: {event.name}\ndata: {data}\n\n"


HEARTBEAT = ": keep-alive\n\n"


async def async_stream(access: StreamAccess, *, after: int):
    from .event_hub import get_hub

    hub = get_hub()
    keys = [session_key(access.session_id), user_key(access.user_id)]
    woken = hub.subscribe(keys, access)
    read = sync_to_async(_read, thread_sensitive=False)
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        next_beat = time.monotonic() + settings.EVENTS_HEARTBEAT_SECONDS
        ends = time.monotonic() + settings.EVENTS_MAX_SECONDS
        while True:
            # Woken by news (or at first): check the access and send what is new. The hub
            # checks every open stream's access in bulk and wakes those it revoked.
            woken.clear()  # before reading: news that lands meanwhile wakes us again
            if hub.is_revoked(woken):
                return
            events = await read(access, after)
            if events is None:
                return
            for event in events:
                yield event_text(event)
                after = event.pk
            if len(events) == BATCH:
                continue
            while True:
                if time.monotonic() >= ends:
                    return
                try:
                    timeout = min(next_beat, ends) - time.monotonic()
                    await asyncio.wait_for(woken.wait(), timeout)
                    break
                except TimeoutError:
                    if time.monotonic() >= next_beat:
                        yield HEARTBEAT
                        next_beat = time.monotonic() + settings.EVENTS_HEARTBEAT_SECONDS
    finally:
        hub.unsubscribe(keys, woken)


def sync_stream(access: StreamAccess, *, after: int):
    """For WSGI servers: holds its thread, so only for development and the tests."""
    yield f"retry: {RECONNECT_MS}\n\n"
    next_beat = time.monotonic() + settings.EVENTS_HEARTBEAT_SECONDS
    next_check = 0.0
    ends = time.monotonic() + settings.EVENTS_MAX_SECONDS
    while time.monotonic() < ends:
        if time.monotonic() >= next_check:
            if not access.still_valid():
                return
            next_check = time.monotonic() + settings.EVENTS_RECHECK_SECONDS
        events = list(SessionEvent.objects.after(access.session_id, after)[:BATCH])
        for event in events:
            yield event_text(event)
            after = event.pk
        if len(events) == BATCH:
            continue
        time.sleep(settings.EVENTS_POLL_MS / 1000)
        if time.monotonic() >= next_beat:
            yield HEARTBEAT
            next_beat = time.monotonic() + settings.EVENTS_HEARTBEAT_SECONDS
