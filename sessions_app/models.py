from django.conf import settings
from django.db import models
from django.db.models import Q

from transcription.models import Transcription


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
        # Finish was pressed while answers were pending: analyzed when the last one lands.
        ANALYZING = "analyzing", "Analyzing"
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


class AnswerQuerySet(models.QuerySet):
    def pending(self):
        """Return the answers still waiting for a transcript."""
        return self.filter(transcription__status__in=Transcription.PENDING)


class Answer(models.Model):
    """One spoken answer to a session's question: its current recording's transcription."""

    Status = Transcription.Status

    session = models.ForeignKey(InterviewSession, on_delete=models.CASCADE, related_name="answers")
    question = models.ForeignKey(Question, on_delete=models.PROTECT, related_name="answers")
    # The latest recording's; a re-recording replaces it (and deletes the old one).
    transcription = models.OneToOneField(
        Transcription, on_delete=models.PROTECT, related_name="answer"
    )
    score = models.FloatField(null=True, blank=True)
    # Why a completed answer has no score (the scorer failed, or nothing was said).
    score_error = models.TextField(blank=True)
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
    def transcription_status(self) -> str:
        return self.transcription.status

    @property
    def is_pending(self) -> bool:
        return self.transcription.is_pending


class SessionEventQuerySet(models.QuerySet):
    def after(self, session_id: int, event_id: int):
        """Return a session's events newer than ``event_id``, oldest first."""
        return self.filter(session_id=session_id, pk__gt=event_id).order_by("pk")


class SessionEvent(models.Model):
    """One event of a session's live stream, kept so a reconnecting client gets what it missed.

    The id is the stream's event id: written under the session's row lock, so a session's
    events commit in id order and "everything after id N" never skips one.
    """

    class Name(models.TextChoices):
        QUEUED = "queued"
        PROCESSING = "processing"
        COMPLETED = "completed"
        FAILED = "failed"
        ANALYSIS = "analysis"

    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey(InterviewSession, on_delete=models.CASCADE, related_name="events")
    name = models.CharField(max_length=20, choices=Name)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SessionEventQuerySet.as_manager()

    class Meta:
        ordering = ["session", "id"]
        indexes = [models.Index(fields=["session", "id"], name="session_event_after")]

    def __str__(self):
        return f"Event {self.pk} ({self.name}) of session {self.session_id}"
