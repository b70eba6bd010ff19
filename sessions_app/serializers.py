import logging

from django.conf import settings
from rest_framework import exceptions, serializers, status

from transcription import audio
from transcription.backends import engine_languages

from .delivery import delivery_feedback
from .models import Answer, InterviewSession, Question

logger = logging.getLogger(__name__)


class SessionCreateSerializer(serializers.Serializer):
    role = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    language = serializers.RegexField(
        r"^(?:[a-z]{2,3})?$",
        required=False,
        allow_blank=True,
        default="",
        error_messages={"invalid": "Use a two-letter language code such as 'en', or leave empty."},
    )
    question_count = serializers.IntegerField(min_value=1, required=False, default=5)

    def validate_language(self, value):
        # A code the engine rejects would fail every answer of the session later.
        if value and value not in engine_languages():
            raise serializers.ValidationError(
                f"'{value}' is not a language the transcription engine knows; "
                "use a code such as 'en' or 'fr', or leave empty to detect it."
            )
        return value

    def validate_question_count(self, value):
        available = Question.objects.count()
        if value > available:
            raise serializers.ValidationError(f"The question bank holds {available} questions.")
        return value


class QuestionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Question
        fields = ["id", "text", "category"]


class SessionSerializer(serializers.ModelSerializer):
    questions = QuestionSerializer(source="ordered_questions", many=True, read_only=True)

    class Meta:
        model = InterviewSession
        fields = ["id", "role", "language", "status", "final_score", "created_at", "questions"]


class UploadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"

    def __init__(self):
        limit = settings.MAX_UPLOAD_BYTES / 1024 / 1024
        super().__init__(f"The audio is larger than the {limit:g} MB limit.")


class UnsupportedAudio(exceptions.APIException):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_code = "unsupported_audio"

    def __init__(self):
        super().__init__(
            f"The file is not audio in an accepted format ({audio.ACCEPTED}), "
            "whatever its name or declared type says."
        )


class AnswerUploadSerializer(serializers.Serializer):
    audio = serializers.FileField(allow_empty_file=False)

    def validate(self, attrs):
        upload = attrs["audio"]
        if upload.size > settings.MAX_UPLOAD_BYTES:
            raise UploadTooLarge()
        container = audio.sniff_container(upload.read(12))
        upload.seek(0)
        if container is None:
            raise UnsupportedAudio()
        try:
            # Its length (MAX_ANSWER_SECONDS) is measured by the transcription job.
            declared_seconds = audio.probe(upload)
        except audio.UnreadableAudio as exc:
            raise serializers.ValidationError({"audio": [str(exc)]}, code="unreadable") from None
        return attrs | {
            "content_type": audio.CONTAINERS[container],
            # The header's word, for the retry_after estimate only; the job measures it.
            "audio_seconds": declared_seconds,
        }


class AnswerStatusSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(source="transcription.status", choices=Answer.Status.choices)
    transcript = serializers.CharField(source="transcription.transcript")
    error = serializers.CharField(source="transcription.error")
    transcribed_at = serializers.DateTimeField(
        source="transcription.transcribed_at", allow_null=True
    )
    language = serializers.CharField(source="transcription.language")
    attempts = serializers.IntegerField(source="transcription.attempts")
    next_attempt_at = serializers.DateTimeField(
        source="transcription.next_attempt_at", allow_null=True
    )
    # Each {"word", "start", "end", "probability"}: seconds, and the engine's confidence
    # (null from engines that give none). Empty until completed.
    words = serializers.JSONField(source="transcription.words")
    delivery = serializers.SerializerMethodField()

    class Meta:
        model = Answer
        fields = [
            "question_id",
            "status",
            "transcript",
            "error",
            "transcribed_at",
            "language",
            "attempts",
            "next_attempt_at",
            "words",
            "delivery",
        ]

    def get_delivery(self, answer: Answer) -> dict | None:
        """Pace, pauses, fillers and unsure words (sessions_app/delivery.py); null without words."""
        transcription = answer.transcription
        return delivery_feedback(
            words=transcription.words, audio_seconds=transcription.audio_seconds
        )


class AnswerResultSerializer(AnswerStatusSerializer):
    class Meta(AnswerStatusSerializer.Meta):
        fields = [
            "question_id",
            "status",
            "transcript",
            "score",
            "score_error",
            "feedback",
            "model_answer",
            "error",
            "words",
            "delivery",
        ]


def analysis_data(analysis) -> dict:
    """The body of a successful analyze, also sent as the stream's ``analysis`` event."""
    failed = [a for a in analysis.answers if a.transcription.status == Answer.Status.FAILED]
    return {
        "status": "success",
        "final_score": analysis.final_score,
        "scored_count": analysis.scored_count,
        "unscored_count": analysis.unscored_count,
        "failed_count": len(failed),
        "answers": AnswerResultSerializer(analysis.answers, many=True).data,
    }


# --- Response shapes, for the OpenAPI document -----------------------------------------


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable reason, e.g. `too_large`.")
    message = serializers.CharField(help_text="What went wrong, for a person.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors only: the messages for each invalid field.",
    )
    field_codes = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors only: the code of each message in `fields`, in order "
        "(`required`, `unreadable`, `max_value`, ...).",
    )


class ErrorSerializer(serializers.Serializer):
    """The one shape of every API error."""

    error = ErrorBodySerializer()


class UploadAcceptedSerializer(serializers.Serializer):
    status = serializers.CharField(help_text='Always "processing": the upload was accepted.')
    message = serializers.CharField()
    file_id = serializers.CharField(
        allow_null=True, help_text="The stored audio's id; null once the audio is deleted."
    )
    transcription_status = serializers.CharField()
    status_url = serializers.URLField(help_text="Poll this URL for the transcript.")


class NotUploadedSerializer(serializers.Serializer):
    question_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["not_uploaded"])


class SessionStatusSummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    not_uploaded = serializers.IntegerField()
    queued = serializers.IntegerField()
    processing = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()


class SessionStatusSerializer(serializers.Serializer):
    session_id = serializers.IntegerField()
    summary = SessionStatusSummarySerializer()
    questions = serializers.ListField(
        help_text="Each question in order: its answer's status, or `not_uploaded`."
    )


class AnalysisPendingSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["transcription_pending"])
    message = serializers.CharField()
    pending_count = serializers.IntegerField()
    processing_count = serializers.IntegerField()
    retry_after = serializers.IntegerField(help_text="Seconds; also in the Retry-After header.")


class AnalysisSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["success"])
    final_score = serializers.FloatField(allow_null=True)
    scored_count = serializers.IntegerField()
    unscored_count = serializers.IntegerField()
    failed_count = serializers.IntegerField()
    answers = AnswerResultSerializer(many=True)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


HEALTH_PART = ["ok", "unavailable"]


class HealthSerializer(serializers.Serializer):
    """Each part ok or unavailable for anyone; the counts only for staff or a monitoring token."""

    status = serializers.ChoiceField(choices=["ok", "degraded", "unavailable"])
    database = serializers.ChoiceField(choices=HEALTH_PART)
    mongodb = serializers.ChoiceField(choices=HEALTH_PART)
    cluster = serializers.ChoiceField(choices=HEALTH_PART)
    queue = serializers.DictField(child=serializers.IntegerField(), allow_null=True, required=False)
    workers = serializers.DictField(
        child=serializers.IntegerField(), allow_null=True, required=False
    )
