"""What the health endpoint reports: each dependency checked for real, nothing private."""

from django.db import connection
from django.db.models import Count
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.status import Stat

from transcription import storage
from transcription.models import Transcription

# A cluster's last status outlives it by a few seconds in the cache.
GONE = {str(Conf.STOPPING), str(Conf.STOPPED)}


def health_check() -> dict:
    """Return the state of the database, MongoDB, the answer queue and the qcluster."""
    report = {"database": "ok", "mongodb": "ok", "queue": None, "cluster": None}
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
    except Exception as exc:
        report["database"] = f"unavailable: {type(exc).__name__}"
    try:
        storage.ping()
    except storage.StorageUnavailable:
        report["mongodb"] = "unavailable"
    try:
        # Clusters publish their status in the shared cache every few seconds.
        clusters = [stat for stat in Stat.get_all() if str(stat.status) not in GONE]
        report["cluster"] = {
            "running": len(clusters),
            "workers": sum(len(cluster.workers) for cluster in clusters),
        }
    except Exception as exc:
        report["cluster"] = f"unknown: {type(exc).__name__}"
    return report
