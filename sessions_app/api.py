"""The JSON API: thin views that validate, call one service, and answer."""

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from transcription.storage import StorageUnavailable

from . import services
from .health import health_check
from .models import Answer, InterviewSession
from .serializers import (
    AnswerResultSerializer,
    AnswerStatusSerializer,
    AnswerUploadSerializer,
    SessionCreateSerializer,
    SessionSerializer,
    UploadTooLarge,
)

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the audio


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"


def exception_handler(exc, context):
    """Give every API error one shape: ``{"error": {"code", "message"[, "fields"]}}``."""
    if isinstance(exc, StorageUnavailable):
        exc = ServiceUnavailable(
            "Audio storage is unavailable; nothing was saved. Try again shortly.",
            code="storage_unavailable",
        )
    elif isinstance(exc, OperationalError | InterfaceError):
        # Only an unreachable database; any other DatabaseError is a bug: a logged 500.
        logger.warning("Database unavailable: %s", exc)
        exc = ServiceUnavailable(
            "The database is unavailable; nothing was saved. Try again shortly.",
            code="database_unavailable",
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc.detail, dict):
        fields = exc.detail
        message = " ".join(
            f"{name}: {' '.join(str(error) for error in errors)}" for name, errors in fields.items()
        )
        response.data = {"error": {"code": "invalid", "message": message, "fields": fields}}
    elif isinstance(exc.detail, list):
        message = " ".join(str(error) for error in exc.detail)
        response.data = {"error": {"code": exc.detail[0].code, "message": message}}
    else:
        code = exc.detail.code if hasattr(exc.detail, "code") else exc.default_code
        response.data = {"error": {"code": code, "message": str(exc.detail)}}
    return response


def not_found(request, exception):
    """Answer unknown API URLs (such as a malformed id) in JSON; the rest as Django does."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": {"code": "not_found", "message": f"No API endpoint at {request.path}."}},
            status=404,
        )
    return defaults.page_not_found(request, exception)


def server_error(request):
    """Answer an unexpected error (already logged by Django) in JSON under /api/."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": {"code": "server_error", "message": "Something went wrong on our side."}},
            status=500,
        )
    return defaults.server_error(request)


def get_own_session(request, session_id: int) -> InterviewSession:
    # Another user's session is reported exactly like a missing one.
    session = InterviewSession.objects.owned_by(request.user).filter(pk=session_id).first()
    if session is None:
        raise exceptions.NotFound("Interview session not found.", code="session_not_found")
    return session


class SessionListCreateApi(APIView):
    def get(self, request):
        sessions = InterviewSession.objects.owned_by(request.user)
        return Response(SessionSerializer(sessions, many=True).data)

    def post(self, request):
        serializer = SessionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = services.session_create(user=request.user, **serializer.validated_data)
        return Response(SessionSerializer(session).data, status=status.HTTP_201_CREATED)


class SessionDetailApi(APIView):
    def get(self, request, session_id):
        return Response(SessionSerializer(get_own_session(request, session_id)).data)


class AnswerUploadApi(APIView):
    parser_classes = [MultiPartParser, FormParser]
    # Per user, counted in the shared cache, so the limit holds across web processes.
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "uploads"

    def post(self, request, session_id, question_id):
        # Refuse an oversized body from its declared length, before reading any of it.
        if _content_length(request) > settings.MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
            raise UploadTooLarge()
        session = get_own_session(request, session_id)
        question = session.questions.filter(pk=question_id).first()
        if question is None:
            raise exceptions.NotFound(
                "This question is not part of the session.", code="question_not_in_session"
            )
        serializer = AnswerUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        answer = services.answer_submit(
            session=session,
            question=question,
            audio=serializer.validated_data["audio"],
            content_type=serializer.validated_data["content_type"],
        )
        return Response(
            {
                "status": "processing",
                "message": "Audio uploaded successfully, transcription in progress",
                "file_id": answer.transcription.gridfs_file_id,
                "transcription_status": answer.transcription.status,
            },
            status=status.HTTP_202_ACCEPTED,
        )


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise exceptions.ParseError("Content-Length is not a number.") from None


class AnswerStatusApi(APIView):
    def get(self, request, session_id, question_id):
        session = get_own_session(request, session_id)
        answer = (
            session.answers.select_related("transcription").filter(question_id=question_id).first()
        )
        if answer is None:
            raise exceptions.NotFound(
                "No answer has been uploaded for this question.", code="answer_not_found"
            )
        return Response(AnswerStatusSerializer(answer).data)


class SessionStatusApi(APIView):
    def get(self, request, session_id):
        session = get_own_session(request, session_id)
        answers = {
            answer.question_id: answer for answer in session.answers.select_related("transcription")
        }
        summary = {"total": 0, "not_uploaded": 0} | {status: 0 for status in Answer.Status}
        questions = []
        for question in session.ordered_questions():
            answer = answers.get(question.pk)
            if answer is None:
                entry = {"question_id": question.pk, "status": "not_uploaded"}
            else:
                entry = AnswerStatusSerializer(answer).data
            summary["total"] += 1
            summary[entry["status"]] += 1
            questions.append(entry)
        return Response({"session_id": session.pk, "summary": summary, "questions": questions})


class SessionAnalyzeApi(APIView):
    def post(self, request, session_id):
        session = get_own_session(request, session_id)
        try:
            analysis = services.session_analyze(session=session)
        except services.NoAnswers:
            raise exceptions.ValidationError(
                "The session has no recorded answers to analyze yet.", code="no_answers"
            ) from None
        if analysis.pending_count:
            return Response(
                {
                    "status": "transcription_pending",
                    "message": f"Waiting for {analysis.pending_count} transcriptions to complete",
                    "pending_count": analysis.pending_count,
                    "processing_count": analysis.processing_count,
                    "retry_after": RETRY_AFTER_SECONDS,
                },
                status=status.HTTP_202_ACCEPTED,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        failed = [a for a in analysis.answers if a.transcription.status == Answer.Status.FAILED]
        return Response(
            {
                "status": "success",
                "final_score": analysis.final_score,
                "scored_count": analysis.scored_count,
                "unscored_count": analysis.unscored_count,
                "failed_count": len(failed),
                "answers": AnswerResultSerializer(analysis.answers, many=True).data,
            }
        )


class HealthApi(APIView):
    """Report whether the database, MongoDB and the queue workers are reachable; no private data."""

    authentication_classes = []
    permission_classes = []

    def get(self, request):
        report = health_check()
        healthy = report["database"] == "ok" and report["mongodb"] == "ok"
        return Response(report, status=200 if healthy else 503)
