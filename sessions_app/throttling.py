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
        # Every slot up to the hint is taken (it is written only after its slot was won),
        # so searching from it is exact; slot 1 is the start's. Slots are read in batches
        # (reads are cheap; on the database cache every add, won or lost, is a write
        # transaction), and only the first free one is claimed: a request usually costs one
        # write. The hint is written every HINT_EVERY slots, so the first batch usually holds
        # the first free slot.
        slot = max(cache.get(f"{window}:hint") or 0, 1) + 1
        while slot <= self.num_requests:
            batch = range(slot, min(slot + 2 * HINT_EVERY, self.num_requests + 1))
            taken = cache.get_many([f"{window}:{n}" for n in batch])
            for n in batch:
                key = f"{window}:{n}"
                if key not in taken and cache.add(key, 1, self.duration + 60):
                    if n % HINT_EVERY == 0:
                        cache.set(f"{window}:hint", n, self.duration + 60)
                    return True
            slot = batch.stop
        return False

    def wait(self):
        return max(1.0, self.window_start + self.duration - time.time())
