from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince
from django_q.models import Failure, OrmQ, Success

from transcription.services import RequeueRefused, task_name, transcription_requeue

from .models import Answer, InterviewSession, Question

# What the pipeline owns, read through the answer's current transcription: editing it by
# hand would desynchronise the answer, its job and its audio.
TRANSCRIPTION_FIELDS = [
    "status",
    "attempts",
    "processing_started_at",
    "next_attempt_at",
    "transcribed_at",
    "error",
    "transcript",
    "language",
    "gridfs_file_id",
    "content_type",
]
PIPELINE_FIELDS = [
    "session",
    "question",
    "transcription",
    *(f"transcription_{name}" for name in TRANSCRIPTION_FIELDS),
    "score",
    "score_error",
    "feedback",
    "model_answer",
    "created_at",
    "updated_at",
]


def _transcription_field(name: str):
    def read(self, answer):
        return getattr(answer.transcription, name)

    read.short_description = name.replace("_", " ")
    read.admin_order_field = f"transcription__{name}"
    return read


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    list_display = ["text", "category", "slug"]
    list_filter = ["category"]
    search_fields = ["text", "slug"]


class TranscriptionFieldsMixin:
    """Show the answer's transcription fields as read-only columns of the answer."""


for _name in TRANSCRIPTION_FIELDS:
    setattr(TranscriptionFieldsMixin, f"transcription_{_name}", _transcription_field(_name))


class AnswerInline(TranscriptionFieldsMixin, admin.TabularInline):
    model = Answer
    fields = ["question", "transcription_status", "transcription_attempts"]
    fields += ["transcription_error", "transcription_transcript", "score"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(InterviewSession)
class InterviewSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "created_at", "status", "final_score", "answer_counts"]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "user__username", "user__email"]
    readonly_fields = ["user", "created_at", "status", "final_score", "analyzed_at"]
    fields = ["user", "role", "language", *readonly_fields[1:]]
    inlines = [AnswerInline]

    def get_queryset(self, request):
        counts = {
            status: Count("answers", filter=Q(answers__transcription__status=status))
            for status in Answer.Status
        }
        return super().get_queryset(request).select_related("user").annotate(**counts)

    @admin.display(description="answers by status")
    def answer_counts(self, session):
        return ", ".join(f"{getattr(session, status)} {status}" for status in Answer.Status)


@admin.register(Answer)
class AnswerAdmin(TranscriptionFieldsMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "session_link",
        "user",
        "question_text",
        "transcription_status",
        "transcription_attempts",
        "transcription_next_attempt_at",
        "transcription_error",
        "age",
    ]
    list_filter = ["transcription__status", "transcription__language", "created_at"]
    search_fields = ["=session__id", "session__user__username", "question__text"]
    list_select_related = ["session__user", "question", "transcription"]
    readonly_fields = [*PIPELINE_FIELDS, "queue_tasks"]
    actions = ["requeue_transcriptions"]
    change_form_template = "admin/sessions_app/answer/change_form.html"

    def has_add_permission(self, request):
        return False

    @admin.display(description="session", ordering="session")
    def session_link(self, answer):
        url = reverse("admin:sessions_app_interviewsession_change", args=[answer.session_id])
        return format_html('<a href="{}">{}</a>', url, answer.session_id)

    @admin.display(description="user", ordering="session__user__username")
    def user(self, answer):
        return answer.session.user

    @admin.display(description="question")
    def question_text(self, answer):
        return answer.question.text[:80]

    @admin.display(description="age", ordering="created_at")
    def age(self, answer):
        return timesince(answer.created_at, timezone.now())

    @admin.display(description="Django-Q tasks")
    def queue_tasks(self, answer):
        name = task_name(answer.transcription_id)
        links = [
            ("admin:django_q_ormq_changelist", OrmQ, "waiting in the queue"),
            ("admin:django_q_failure_changelist", Failure, "failed"),
            ("admin:django_q_success_changelist", Success, "successful"),
        ]
        found = [
            (f"{reverse(url)}?q={name}", f"{label}: {count}")
            for url, model, label in links
            if (count := _task_count(model, name))
        ]
        if not found:
            return "No task recorded for this answer."
        return format_html_join(" · ", '<a href="{}">{}</a>', found)

    # Only staff who may change answers see the action, and Django refuses it to the others.
    @admin.action(description="Re-queue selected transcriptions", permissions=["change"])
    def requeue_transcriptions(self, request, queryset):
        requeued, refused = 0, []
        for answer in queryset.select_related("transcription").order_by("pk"):
            try:
                transcription_requeue(transcription=answer.transcription)
                requeued += 1
            except RequeueRefused as reason:
                refused.append(f"answer {answer.pk}: {reason}")
        self.message_user(request, f"Re-queued {requeued} transcriptions.", messages.SUCCESS)
        if refused:
            self.message_user(
                request,
                f"{len(refused)} could not be re-queued: {'; '.join(refused)}.",
                messages.WARNING,
            )

    def get_urls(self):
        requeue = self.admin_site.admin_view(self.requeue_one)
        own = [path("<int:answer_id>/requeue/", requeue, name="sessions_app_answer_requeue")]
        return own + super().get_urls()

    def requeue_one(self, request, answer_id):
        """Re-queue one answer from its page (POST only, staff with change permission)."""
        answer = get_object_or_404(Answer, pk=answer_id)
        change_url = reverse("admin:sessions_app_answer_change", args=[answer_id])
        if request.method != "POST" or not self.has_change_permission(request, answer):
            return HttpResponseRedirect(change_url)
        self.requeue_transcriptions(request, Answer.objects.filter(pk=answer_id))
        return HttpResponseRedirect(change_url)


def _task_count(model, name: str) -> int:
    if model is OrmQ:
        # OrmQ keeps the task signed in its payload; its name is only readable per row.
        return sum(task.name() == name for task in OrmQ.objects.all())
    return model.objects.filter(name=name).count()
