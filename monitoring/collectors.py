"""Gauges read from the database, GridFS and django-q at scrape time (never stale, and the
same whichever process answers the scrape)."""

import logging

from prometheus_client.core import GaugeMetricFamily

from . import queue

logger = logging.getLogger(__name__)


class QueueCollector:
    """Answers by status, the oldest queued answer's wait, audio held, clusters alive."""

    def collect(self):
        up = GaugeMetricFamily(
            "interview_monitoring_source_up",
            "1 when the source of the gauges below answered this scrape.",
            labels=["source"],
        )
        try:
            counts = queue.answers_by_status()
            oldest = queue.oldest_queued_seconds()
        except Exception:
            logger.exception("Metrics: the database did not answer")
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            by_status = GaugeMetricFamily(
                "interview_answers", "Answers by transcription status.", labels=["status"]
            )
            for status, count in counts.items():
                by_status.add_metric([status], count)
            yield by_status
            yield GaugeMetricFamily(
                "interview_queue_oldest_age_seconds",
                "How long the longest-waiting due queued answer has waited (0: none).",
                value=oldest,
            )
        try:
            audio_bytes, audio_files = queue.audio_bytes_held()
        except Exception:
            logger.warning("Metrics: GridFS did not answer", exc_info=True)
            up.add_metric(["mongodb"], 0)
        else:
            up.add_metric(["mongodb"], 1)
            yield GaugeMetricFamily(
                "interview_gridfs_audio_bytes", "Bytes of audio held in GridFS.", value=audio_bytes
            )
            yield GaugeMetricFamily(
                "interview_gridfs_audio_files", "Audio files held in GridFS.", value=audio_files
            )
        try:
            clusters, workers = queue.clusters_alive()
        except Exception:
            logger.warning("Metrics: the cluster status did not answer", exc_info=True)
            up.add_metric(["cluster_status"], 0)
        else:
            up.add_metric(["cluster_status"], 1)
            yield GaugeMetricFamily(
                "interview_qcluster_clusters", "qcluster processes alive.", value=clusters
            )
            yield GaugeMetricFamily(
                "interview_qcluster_workers", "qcluster workers alive.", value=workers
            )
        yield up
