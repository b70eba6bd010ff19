"""Django's database and Redis caches, counting gets, hits and misses."""

from django.core.cache.backends import db, redis

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
    backend_label = "database"


class RedisCache(_CountedGets, redis.RedisCache):
    backend_label = "redis"
