from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Question(models.Model):
    """An interview question from the shipped bank, with what a good answer covers."""

    slug = models.SlugField(max_length=100, unique=True)
    category = models.CharField(max_length=50, db_index=True)
    text = models.TextField()
    model_answer = models.TextField()
    key_points = models.JSONField(default=list)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.text


class InterviewSessionQuerySet(models.QuerySet):
    def owned_by(self, user):
        return self.filter(user=user)


class InterviewSession(models.Model):
    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        ANALYZED = "analyzed", "Analyzed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="interview_sessions"
    )
    role = models.CharField(max_length=100, blank=True)
    # Empty means "detect the spoken language".
    language = models.CharField(max_length=8, blank=True)
    status = models.CharField(max_length=20, choices=Status, default=Status.IN_PROGRESS)
    final_score = models.FloatField(null=True, blank=True)
    analyzed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    questions = models.ManyToManyField(
        Question, through="SessionQuestion", related_name="interview_sessions"
    )

    objects = InterviewSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Session {self.pk} of {self.user}"

    def ordered_questions(self):
        return self.questions.order_by("sessionquestion__position")


class SessionQuestion(models.Model):
    """A question's place in a session's ordered list."""

    session = models.ForeignKey(InterviewSession, on_delete=models.CASCADE)
    question = models.ForeignKey(Question, on_delete=models.PROTECT)
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["session", "position"]
        constraints = [
            models.UniqueConstraint(fields=["session", "position"], name="unique_position"),
            models.UniqueConstraint(fields=["session", "question"], name="unique_session_question"),
        ]

    def __str__(self):
        return f"Question {self.position} of session {self.session_id}"


def stuck_before():
    """Return the time before which a processing claim means its worker is gone."""
    # django-q kills a job after its timeout; the margin covers clock skew and slow commits.
    return timezone.now() - timedelta(
        seconds=settings.Q_CLUSTER["timeout"] + settings.STUCK_TRANSCRIPTION_MARGIN_SECONDS
    )


class AnswerQuerySet(models.QuerySet):
    def pending(self):
        """Return the answers still waiting for a transcript."""
        return self.filter(
            transcription_status__in=[Answer.Status.QUEUED, Answer.Status.PROCESSING]
        )

    def stuck(self):
        """Return the answers whose transcription worker was lost."""
        return self.filter(
            transcription_status=Answer.Status.PROCESSING, processing_started_at__lt=stuck_before()
        )


class Answer(models.Model):
    """One spoken answer: its audio lives in GridFS until the transcript is saved."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    session = models.ForeignKey(InterviewSession, on_delete=models.CASCADE, related_name="answers")
    question = models.ForeignKey(Question, on_delete=models.PROTECT, related_name="answers")
    # NULL, not "", once the audio is deleted: the design's "null once transcribed".
    gridfs_file_id = models.CharField(max_length=24, null=True, blank=True)  # noqa: DJ001
    content_type = models.CharField(max_length=100, blank=True)
    transcription_status = models.CharField(
        max_length=20, choices=Status, default=Status.QUEUED, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    processing_started_at = models.DateTimeField(null=True, blank=True)
    # When a failed attempt that may succeed later is tried again.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    transcribed_at = models.DateTimeField(null=True, blank=True)
    transcription_error = models.TextField(blank=True)
    transcript = models.TextField(blank=True)
    language = models.CharField(max_length=8, blank=True)
    score = models.FloatField(null=True, blank=True)
    feedback = models.JSONField(default=list, blank=True)
    model_answer = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AnswerQuerySet.as_manager()

    class Meta:
        ordering = ["session", "id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "question"], name="one_answer_per_question"),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | Q(score__gte=0, score__lte=100),
                name="score_between_0_and_100",
            ),
        ]

    def __str__(self):
        return f"Answer to question {self.question_id} in session {self.session_id}"

    @property
    def is_stuck(self) -> bool:
        """Processing for longer than any live worker could: its worker was lost."""
        return (
            self.transcription_status == self.Status.PROCESSING
            and self.processing_started_at is not None
            and self.processing_started_at < stuck_before()
        )

    @property
    def is_pending(self) -> bool:
        return self.transcription_status in (self.Status.QUEUED, self.Status.PROCESSING)
