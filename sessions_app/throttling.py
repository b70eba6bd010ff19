"""A rate limit whose count is exact under concurrency, in any shared Django cache."""

import time

from django.core.cache import cache
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle

# How far the hint (the highest slot known to be taken) may lag behind the slots taken.
HINT_EVERY = 16


class AtomicRateThrottle(SimpleRateThrottle):
    """Allow ``num_requests`` per ``duration`` seconds per user, counting atomically.

    DRF's own throttles read the history, append and write it back in separate cache
    calls: requests released together all read the same history and all pass. Here every
    allowed request must claim one of the window's numbered slots with ``cache.add``,
    which only one caller can win (Redis ``SET NX``; the database cache's primary key).
    That holds on the database cache and on Redis alike, where ``incr`` would not (the
    database cache's ``incr`` is a read then a write). A window starts with its user's
    first request, so a burst cannot straddle two windows.
    """

    scope_attr = "throttle_scope"

    def __init__(self):
        # The scope comes from the view, as with DRF's ScopedRateThrottle.
        pass

    def allow_request(self, request, view):
        self.scope = getattr(view, self.scope_attr, None)
        # Reads are never counted: only what creates something (an upload, a session).
        if not self.scope or request.method in SAFE_METHODS or not request.user.is_authenticated:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        base = f"throttle:{self.scope}:{request.user.pk}"
        now = time.time()
        if self.num_requests < 1:
            self.window_start = now
            return False
        # A read first: only a user's first request of a window writes its start, and the
        # one request that wins that add owns the window's slot 1 (one write, not two).
        self.window_start = cache.get(f"{base}:start")
        if self.window_start is None:
            if cache.add(f"{base}:start", now, self.duration):
                self.window_start = now
                return True
            self.window_start = cache.get(f"{base}:start") or now
        window = f"{base}:{self.window_start!r}"
        # Slots are read in batches (reads are cheap; on the database cache every add, won
        # or lost, is a write transaction), and only the first free one is claimed: a request
        # usually costs one write. Slot 1 is the start's. The first batch is read with the
        # hint (the highest slot known to be taken: it is written every HINT_EVERY slots, only
        # after its slot was won), and a batch below the hint is skipped, so the search is
        # exact and usually one read.
        hint_key = f"{window}:hint"
        slot, hint = 2, None
        while slot <= self.num_requests:
            batch = range(slot, min(slot + 2 * HINT_EVERY, self.num_requests + 1))
            keys = [f"{window}:{n}" for n in batch]
            taken = cache.get_many(keys if hint is not None else [*keys, hint_key])
            if hint is None:
                hint = taken.pop(hint_key, 0)
                if hint >= batch.stop:
                    slot = hint + 1
                    continue
            for n in batch:
                key = f"{window}:{n}"
                if key not in taken and cache.add(key, 1, self.duration + 60):
                    if n % HINT_EVERY == 0:
                        cache.set(hint_key, n, self.duration + 60)
                    return True
            slot = batch.stop
        return False

    def wait(self):
        return max(1.0, self.window_start + self.duration - time.time())
