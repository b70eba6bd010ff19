"""What the queue looks like right now: read at scrape time and by the readiness check."""

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.conf import Conf
from django_q.status import Stat

from sessions_app.models import Answer
from transcription import storage
from transcription.models import Transcription

STATUSES = [status.value for status in Transcription.Status]


def answers_by_status() -> dict[str, int]:
    """Answers by their current transcription's status."""
    counts = dict(
        Answer.objects.values_list("transcription__status").annotate(n=Count("id")).order_by()
    )
    return {status: counts.get(status, 0) for status in STATUSES}


def oldest_queued_seconds() -> float:
    """How long the longest-waiting queued answer has been due for a worker (0: none waits).

    A transcription is queued since its last status change (``updated_at``); one waiting for
    a retry's backoff is not due until its ``next_attempt_at``.
    """
    now = timezone.now()
    due_since = (
        Transcription.objects.filter(status=Transcription.Status.QUEUED)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .aggregate(oldest=Min(Coalesce("next_attempt_at", "updated_at")))["oldest"]
    )
    return max((now - due_since).total_seconds(), 0.0) if due_since else 0.0


def clusters_alive() -> tuple[int, int]:
    """Return the qcluster processes and their workers that reported in the shared cache."""
    # A stopped cluster's last status outlives it in the cache for a few seconds.
    gone = {str(Conf.STOPPING), str(Conf.STOPPED)}
    clusters = [stat for stat in Stat.get_all() if str(stat.status) not in gone]
    return len(clusters), sum(len(cluster.workers) for cluster in clusters)


def audio_bytes_held() -> tuple[int, int]:
    """Return the bytes and files of audio GridFS holds (raises StorageUnavailable)."""
    with storage.mongo_errors():
        totals = list(
            storage.get_database()[f"{storage.BUCKET}.files"].aggregate(
                [{"$group": {"_id": None, "bytes": {"$sum": "$length"}, "files": {"$sum": 1}}}]
            )
        )
    return (int(totals[0]["bytes"]), int(totals[0]["files"])) if totals else (0, 0)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: list[str]
    oldest_queued_seconds: float
    clusters: int
    workers: int

    def as_dict(self) -> dict:
        return {
            "status": "ok" if self.ready else "degraded",
            "reasons": self.reasons,
            "oldest_queued_seconds": round(self.oldest_queued_seconds, 1),
            "stall_threshold_seconds": settings.QUEUE_STALL_SECONDS,
            "cluster": {"running": self.clusters, "workers": self.workers},
        }


def readiness() -> Readiness:
    """Degraded when the oldest due answer has waited longer than QUEUE_STALL_SECONDS.

    The reason says which case it is: no cluster alive to take it, or clusters alive that
    do not keep up (or are stuck). Database errors propagate: the caller answers 503.
    """
    waited = oldest_queued_seconds()
    clusters, workers = clusters_alive()
    reasons = []
    threshold = settings.QUEUE_STALL_SECONDS
    if waited > threshold:
        if clusters == 0:
            reasons.append(f"no cluster alive and answers queued for {waited:.0f}s")
        else:
            reasons.append(f"oldest queued answer waited {waited:.0f}s (over {threshold}s)")
    return Readiness(not reasons, reasons, waited, clusters, workers)
