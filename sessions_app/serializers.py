from django.conf import settings
from rest_framework import exceptions, serializers, status

from transcription import audio

from .models import Answer, InterviewSession, Question


class SessionCreateSerializer(serializers.Serializer):
    role = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    language = serializers.RegexField(
        r"^[a-z]{2,3}$",
        required=False,
        allow_blank=True,
        default="",
        error_messages={"invalid": "Use a two-letter language code such as 'en', or leave empty."},
    )
    question_count = serializers.IntegerField(min_value=1, required=False, default=5)

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
        seconds = audio.duration_seconds(upload)
        if seconds is not None and seconds > settings.MAX_ANSWER_SECONDS:
            raise serializers.ValidationError(
                {
                    "audio": [
                        f"The answer is {seconds:.0f} seconds long; "
                        f"the limit is {settings.MAX_ANSWER_SECONDS} seconds."
                    ]
                },
                code="too_long",
            )
        return attrs | {"content_type": audio.CONTAINERS[container]}


class AnswerStatusSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="transcription.status")
    transcript = serializers.CharField(source="transcription.transcript")
    error = serializers.CharField(source="transcription.error")
    transcribed_at = serializers.DateTimeField(source="transcription.transcribed_at")
    language = serializers.CharField(source="transcription.language")
    attempts = serializers.IntegerField(source="transcription.attempts")
    next_attempt_at = serializers.DateTimeField(source="transcription.next_attempt_at")

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
        ]


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
        ]
