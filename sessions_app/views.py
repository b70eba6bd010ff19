"""The interview screen's HTML pages: they render templates, and their JavaScript calls the API."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from .models import InterviewSession, Question
from .serializers import SessionSerializer

RECENT_SESSIONS = 10


@login_required
def interview_start(request):
    """Show the form that starts an interview, and the candidate's recent interviews."""
    topics = Question.objects.order_by("category").values_list("category", flat=True).distinct()
    return render(
        request,
        "interview/start.html",
        {
            "question_bank_size": Question.objects.count(),
            "topics": list(topics),
            "sessions": InterviewSession.objects.owned_by(request.user)[:RECENT_SESSIONS],
            "page": {
                "sessions_url": reverse("sessions"),
                # The page swaps in the new session's id.
                "interview_url": reverse("interview-detail", args=[0]).replace("/0/", "/{id}/"),
            },
        },
    )


@login_required
def interview_detail(request, session_id):
    """Show one interview: its questions one at a time, then its results."""
    session = get_object_or_404(InterviewSession.objects.owned_by(request.user), pk=session_id)
    questions = SessionSerializer(session).data["questions"]
    for question in questions:
        question["upload_url"] = reverse("upload-answer", args=[session.pk, question["id"]])
    return render(
        request,
        "interview/interview.html",
        {
            "session": session,
            "page": {
                "session_id": session.pk,
                # Finish was pressed: the page goes straight to the results (or waits for them).
                "analyzed": session.status != InterviewSession.Status.IN_PROGRESS,
                "questions": questions,
                "status_url": reverse("session-status", args=[session.pk]),
                "analyze_url": reverse("analyze", args=[session.pk]),
                "events_url": reverse("session-events", args=[session.pk]),
            },
        },
    )
