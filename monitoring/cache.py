"""Django's database and Redis caches, counting gets, hits and misses in django-prometheus's
counters (its own Redis wrapper needs django-redis, and it has none for the database cache)."""

from django.core.cache.backends import db, redis
from django_prometheus.cache.metrics import (
    django_cache_get_total,
    django_cache_hits_total,
    django_cache_misses_total,
)

_MISSING = object()


class _CountedGets:
    backend_label = ""

    def get(self, key, default=None, version=None):
        django_cache_get_total.labels(backend=self.backend_label).inc()
        value = super().get(key, _MISSING, version=version)
        if value is _MISSING:
            django_cache_misses_total.labels(backend=self.backend_label).inc()
            return default
        django_cache_hits_total.labels(backend=self.backend_label).inc()
        return value


class DatabaseCache(_CountedGets, db.DatabaseCache):
    backend_label = "database"


class RedisCache(_CountedGets, redis.RedisCache):
    backend_label = "redis"
