"""Django's database and Redis caches, counting gets, hits and misses."""

import base64
import pickle
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache.backends import db, redis
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.db import connections, router
from django.utils import timezone

from . import metrics

_MISSING = object()


class _CountedGets:
    backend_label = ""

    def get(self, key, default=None, version=None):
        metrics.cache_gets.labels(backend=self.backend_label).inc()
        value = super().get(key, _MISSING, version=version)
        if value is _MISSING:
            metrics.cache_misses.labels(backend=self.backend_label).inc()
            return default
        metrics.cache_hits.labels(backend=self.backend_label).inc()
        return value


class DatabaseCache(_CountedGets, db.DatabaseCache):
    """Django's database cache, its ``add`` one statement on SQLite and PostgreSQL.

    Django's own add counts the table, then in a transaction selects the key and inserts or
    updates it. The rate limit adds a key for every request it allows, and on SQLite each
    of those statements inside the write transaction hands the GIL to the web process's
    other threads and waits to get it back, with the one write lock held meanwhile (the
    bench's 200-candidate burst: 5 ms a throttle write, half of the web's writes). Here an
    upsert inserts the key, or replaces it only if it has expired, and reports which.
    """

    backend_label = "database"
    UPSERT_VENDORS = {"sqlite", "postgresql"}

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        connection = connections[router.db_for_write(self.cache_model_class)]
        if connection.vendor not in self.UPSERT_VENDORS:
            return super().add(key, value, timeout, version)
        key = self.make_and_validate_key(key, version=version)
        timeout = self.get_backend_timeout(timeout)
        tz = UTC if settings.USE_TZ else None
        now = timezone.now().replace(microsecond=0)
        expires = datetime.max if timeout is None else datetime.fromtimestamp(timeout, tz=tz)
        pickled = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
        adapt, table = (
            connection.ops.adapt_datetimefield_value,
            connection.ops.quote_name(self._table),
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (cache_key, value, expires) VALUES (%s, %s, %s) "
                "ON CONFLICT (cache_key) DO UPDATE SET value = excluded.value, "
                f"expires = excluded.expires WHERE {table}.expires < %s",
                [key, pickled, adapt(expires.replace(microsecond=0)), adapt(now)],
            )
            return cursor.rowcount == 1


class RedisCache(_CountedGets, redis.RedisCache):
    backend_label = "redis"
