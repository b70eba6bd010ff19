"""What the health endpoint reports: each dependency checked for real, quickly, nothing private."""

import logging
import threading
import time

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.status import Stat

from monitoring.queue import readiness
from transcription import storage
from transcription.models import Transcription

# A cluster's last status outlives it by a few seconds in the cache.
GONE = {str(Conf.STOPPING), str(Conf.STOPPED)}

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_last: tuple[float, dict] | None = None


def health_check() -> dict:
    """Return the latest report, checking again at most every HEALTH_CACHE_SECONDS.

    One check at a time per process: probes that arrive meanwhile wait for it (at most the
    short MongoDB ping) and share its result, so an outage never ties up the web threads.
    """
    global _last
    with _lock:
        if _last is not None and time.monotonic() - _last[0] < settings.HEALTH_CACHE_SECONDS:
            return _last[1]
        report = _check()
        _last = (time.monotonic(), report)
        return report


def public_view(report: dict) -> dict:
    """What anyone may see: ok or unavailable per part, no counts."""
    return {part: report[part] for part in ("status", "database", "mongodb", "cluster")}


def _check() -> dict:
    report = {"database": "ok", "mongodb": "ok", "cluster": "ok", "queue": None, "workers": None}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        counts = dict(
            Transcription.objects.values_list("status").annotate(n=Count("id")).order_by()
        )
        Status = Transcription.Status
        report["queue"] = {
            status: counts.get(status, 0)
            for status in (Status.QUEUED, Status.PROCESSING, Status.FAILED)
        } | {"jobs_waiting": OrmQ.objects.count()}
    except Exception:
        logger.warning("Health: the database is unavailable", exc_info=True)
        report["database"] = "unavailable"
    try:
        storage.ping(timeout_ms=settings.HEALTH_TIMEOUT_MS)
    except storage.StorageUnavailable:
        logger.warning("Health: MongoDB is unavailable", exc_info=True)
        report["mongodb"] = "unavailable"
    try:
        # Clusters publish their status in the shared cache every few seconds.
        clusters = [stat for stat in Stat.get_all() if str(stat.status) not in GONE]
        report["workers"] = {
            "running": len(clusters),
            "workers": sum(len(cluster.workers) for cluster in clusters),
        }
        if not clusters:
            report["cluster"] = "unavailable"
    except Exception:
        logger.warning("Health: the cluster status is unreadable", exc_info=True)
        report["cluster"] = "unavailable"
    # "degraded" when answers wait too long (readiness, /api/health/ready, says why).
    try:
        report["status"] = "ok" if readiness().ready else "degraded"
    except Exception:
        logger.warning("Health: readiness is unreadable", exc_info=True)
        report["status"] = "unavailable"
    return report
