"""One listener per web process that wakes the open event streams when their session has news,
and closes those whose session or credentials are gone.

The streams wait on an ``asyncio.Event`` each; nothing here holds a thread. The hub learns
of news from PostgreSQL LISTEN, from Redis SUBSCRIBE when REDIS_URL is set, or (SQLite) by
reading the ids of new event rows every EVENTS_POLL_MS: one query per process, however many
streams are open. When its connection drops it reconnects and wakes every stream, which
then reads the table: an announcement lost meanwhile delays an event, never loses it.
Every EVENTS_RECHECK_SECONDS it checks every open stream's session and credentials in a few
queries (not one per stream), and closes those that no longer hold: what the announcements
of deletions (PostgreSQL, Redis) do at once, this does on SQLite and after a lost one.
"""

import asyncio
import logging
from collections import defaultdict

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from .events import session_key
from .models import SessionEvent
from .streams import StreamAccess, invalid_accesses

logger = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self.streams: dict[asyncio.Event, StreamAccess] = {}
        self.revoked: set[asyncio.Event] = set()
        self.task = loop.create_task(self._run(), name="session-events-hub")
        self.recheck_task = loop.create_task(self._recheck(), name="session-events-recheck")

    def subscribe(self, keys: list[str], access: StreamAccess) -> asyncio.Event:
        event = asyncio.Event()
        for key in keys:
            self.waiters[key].add(event)
        self.streams[event] = access
        return event

    def is_revoked(self, event: asyncio.Event) -> bool:
        return event in self.revoked

    def unsubscribe(self, keys: list[str], event: asyncio.Event) -> None:
        self.streams.pop(event, None)
        self.revoked.discard(event)
        for key in keys:
            waiting = self.waiters.get(key)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self.waiters[key]

    def wake(self, key: str) -> None:
        for event in self.waiters.get(key, ()):
            event.set()

    def wake_all(self) -> None:
        for waiting in self.waiters.values():
            for event in waiting:
                event.set()

    async def _recheck(self) -> None:
        check = sync_to_async(invalid_accesses, thread_sensitive=False)
        while True:
            await asyncio.sleep(settings.EVENTS_RECHECK_SECONDS)
            streams = list(self.streams.items())
            if not streams:
                continue
            try:
                invalid = await check([access for _, access in streams])
            except Exception as exc:
                logger.warning("Could not check the open event streams: %s", exc)
                continue
            for event, access in streams:
                if access in invalid:
                    self.revoked.add(event)
                    event.set()

    async def _run(self) -> None:
        if settings.REDIS_URL:
            listen = self._listen_redis
        elif connection.vendor == "postgresql":
            listen = self._listen_postgres
        else:
            listen = self._poll_table
        while True:
            try:
                await listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("Event listener lost its connection, reconnecting: %s", exc)
            self.wake_all()  # anything announced meanwhile is in the table
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen_postgres(self) -> None:
        import psycopg

        db = connection.settings_dict
        params = {
            "dbname": db["NAME"],
            "user": db["USER"] or None,
            "password": db["PASSWORD"] or None,
            "host": db["HOST"] or None,
            "port": db["PORT"] or None,
        }
        params = {name: value for name, value in params.items() if value is not None}
        async with await psycopg.AsyncConnection.connect(**params, autocommit=True) as conn:
            await conn.execute(f'LISTEN "{settings.EVENTS_CHANNEL}"')
            self.wake_all()
            async for notify in conn.notifies():
                self.wake(notify.payload)

    async def _listen_redis(self) -> None:
        from redis import asyncio as aioredis

        client = aioredis.from_url(settings.REDIS_URL)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(settings.EVENTS_CHANNEL)
                self.wake_all()
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self.wake(message["data"].decode())
        finally:
            await client.aclose()

    async def _poll_table(self) -> None:
        last = await _latest_event_id()
        self.wake_all()
        while True:
            await asyncio.sleep(settings.EVENTS_POLL_MS / 1000)
            if not self.waiters:
                last = await _latest_event_id()
                continue
            for event_id, session_id in await _events_after(last):
                last = max(last, event_id)
                self.wake(session_key(session_id))


@sync_to_async(thread_sensitive=False)
def _latest_event_id() -> int:
    latest = SessionEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    return latest or 0


@sync_to_async(thread_sensitive=False)
def _events_after(event_id: int) -> list[tuple[int, int]]:
    return list(
        SessionEvent.objects.filter(pk__gt=event_id)
        .order_by("pk")
        .values_list("pk", "session_id")[:1000]
    )


_hub: Hub | None = None


def get_hub() -> Hub:
    """The running event loop's hub, started on first use (one per web worker process)."""
    global _hub
    loop = asyncio.get_running_loop()
    if _hub is None or _hub.loop is not loop or _hub.task.done() or _hub.recheck_task.done():
        _hub = Hub(loop)
    return _hub
