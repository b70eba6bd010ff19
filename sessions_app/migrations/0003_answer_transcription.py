"""Move each answer's transcription state into the transcription app's own model."""

import django.db.models.deletion
from django.db import migrations, models

MOVED = [
    # (answer field, transcription field)
    ("gridfs_file_id", "gridfs_file_id"),
    ("content_type", "content_type"),
    ("transcription_status", "status"),
    ("attempts", "attempts"),
    ("processing_started_at", "processing_started_at"),
    ("next_attempt_at", "next_attempt_at"),
    ("transcribed_at", "transcribed_at"),
    ("transcription_error", "error"),
    ("transcript", "transcript"),
    ("language", "language"),
]


def answers_to_transcriptions(apps, schema_editor):
    Answer = apps.get_model("sessions_app", "Answer")
    Transcription = apps.get_model("transcription", "Transcription")
    for answer in Answer.objects.select_related("session").iterator():
        transcription = Transcription.objects.create(
            language_hint=answer.session.language,
            metadata={
                "session_id": answer.session_id,
                "question_id": answer.question_id,
                "user_id": answer.session.user_id,
            },
            **{target: getattr(answer, source) for source, target in MOVED},
        )
        Answer.objects.filter(pk=answer.pk).update(transcription=transcription)


def transcriptions_to_answers(apps, schema_editor):
    Answer = apps.get_model("sessions_app", "Answer")
    for answer in Answer.objects.select_related("transcription").iterator():
        Answer.objects.filter(pk=answer.pk).update(
            **{source: getattr(answer.transcription, target) for source, target in MOVED}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0002_answer_next_attempt_at"),
        ("transcription", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="answer",
            name="transcription",
            field=models.OneToOneField(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="answer",
                to="transcription.transcription",
            ),
        ),
        migrations.AddField(
            model_name="answer",
            name="score_error",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(answers_to_transcriptions, transcriptions_to_answers),
        *(migrations.RemoveField(model_name="answer", name=source) for source, _ in MOVED),
        migrations.AlterField(
            model_name="answer",
            name="transcription",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="answer",
                to="transcription.transcription",
            ),
        ),
    ]
