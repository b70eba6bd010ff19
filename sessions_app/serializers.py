from rest_framework import serializers

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


class AnswerUploadSerializer(serializers.Serializer):
    audio = serializers.FileField(allow_empty_file=False)


class AnswerStatusSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="transcription_status")
    error = serializers.CharField(source="transcription_error")

    class Meta:
        model = Answer
        fields = ["question_id", "status", "transcript", "error", "transcribed_at", "language"]


class AnswerResultSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="transcription_status")
    error = serializers.CharField(source="transcription_error")

    class Meta:
        model = Answer
        fields = [
            "question_id",
            "status",
            "transcript",
            "score",
            "feedback",
            "model_answer",
            "error",
        ]
