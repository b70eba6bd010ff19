from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def lease_expired_before():
    """Return the time before which a processing claim means its worker is gone."""
    # django-q kills a job after its timeout; the margin covers clock skew and slow commits.
    return timezone.now() - timedelta(
        seconds=settings.Q_CLUSTER["timeout"] + settings.STUCK_TRANSCRIPTION_MARGIN_SECONDS
    )


class TranscriptionQuerySet(models.QuerySet):
    def pending(self):
        """Return the transcriptions still waiting for a transcript."""
        return self.filter(status__in=Transcription.PENDING)

    def stuck(self):
        """Return the transcriptions whose worker was lost mid-transcription."""
        return self.filter(
            status=Transcription.Status.PROCESSING, processing_started_at__lt=lease_expired_before()
        )


class Transcription(models.Model):
    """One transcription of one stored recording: its audio lives in GridFS until transcribed."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    PENDING = (Status.QUEUED, Status.PROCESSING)

    # NULL, not "", once the audio is deleted: the design's "null once transcribed".
    gridfs_file_id = models.CharField(max_length=24, null=True, blank=True)  # noqa: DJ001
    content_type = models.CharField(max_length=100, blank=True)
    # The language the caller asked for; empty means "detect the spoken language".
    language_hint = models.CharField(max_length=8, blank=True)
    # Context for the engine (the question, its vocabulary): never the expected answer.
    prompt = models.TextField(blank=True)
    # The caller's own references (session, question, user), opaque to this app.
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status, default=Status.QUEUED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    processing_started_at = models.DateTimeField(null=True, blank=True)
    # When a failed attempt that may succeed later is tried again.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    transcribed_at = models.DateTimeField(null=True, blank=True)
    # Shown to the candidate: what happened and what to do.
    error = models.TextField(blank=True)
    transcript = models.TextField(blank=True)
    language = models.CharField(max_length=8, blank=True)
    words = models.JSONField(default=list, blank=True)
    audio_seconds = models.FloatField(null=True, blank=True)
    engine_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TranscriptionQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="processing") | Q(processing_started_at__isnull=False),
                name="processing_has_a_start",
            ),
        ]

    def __str__(self):
        return f"Transcription {self.pk} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status in self.PENDING

    @property
    def is_stuck(self) -> bool:
        """Processing for longer than any live worker could: its worker was lost."""
        return (
            self.status == self.Status.PROCESSING
            and self.processing_started_at is not None
            and self.processing_started_at < lease_expired_before()
        )
