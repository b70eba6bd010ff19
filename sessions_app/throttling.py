"""A rate limit whose count is exact under concurrency, in any shared Django cache."""

import time

from django.core.cache import cache
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle


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
        # A read first: only a user's first request of a window writes its start.
        self.window_start = cache.get(f"{base}:start")
        if self.window_start is None:
            cache.add(f"{base}:start", now, self.duration)
            self.window_start = cache.get(f"{base}:start") or now
        window = f"{base}:{self.window_start!r}"
        # Every slot up to the hint is taken (it is written only after its slot was won),
        # so searching from it is exact and usually costs one add.
        first = (cache.get(f"{window}:hint") or 0) + 1
        for slot in range(first, self.num_requests + 1):
            if cache.add(f"{window}:{slot}", 1, self.duration + 60):
                cache.set(f"{window}:hint", slot, self.duration + 60)
                return True
        return False

    def wait(self):
        return max(1.0, self.window_start + self.duration - time.time())
