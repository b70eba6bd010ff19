"""The JSON API: thin views that validate, call one service, and answer."""

import hmac
import logging
from types import SimpleNamespace

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.views import defaults
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from transcription.storage import StorageUnavailable

from . import services, streams
from .health import health_check, public_view
from .models import Answer, InterviewSession
from .serializers import (
    AnalysisPendingSerializer,
    AnalysisSerializer,
    AnswerStatusSerializer,
    AnswerUploadSerializer,
    ErrorSerializer,
    HealthSerializer,
    SessionCreateSerializer,
    SessionSerializer,
    SessionStatusSerializer,
    TokenSerializer,
    UploadAcceptedSerializer,
    UploadTooLarge,
    analysis_data,
)
from .throttling import AtomicRateThrottle

logger = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the audio


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"


def exception_handler(exc, context):
    """Give every API error one shape: ``{"error": {"code", "message"[, "fields"]}}``."""
    # What broke (host names, driver messages) goes to the log; the candidate learns what to do.
    if isinstance(exc, StorageUnavailable):
        logger.warning("Audio storage unavailable: %s", exc)
        exc = ServiceUnavailable(
            "Audio storage is unavailable; nothing was saved. Try again shortly.",
            code="storage_unavailable",
        )
    elif isinstance(exc, Http404):  # raised by DRF itself, e.g. for an unknown ?format=
        exc = exceptions.NotFound()
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
        fields = flatten_errors(exc.detail)
        message = " ".join(
            f"{name}: {' '.join(str(error) for error in errors)}" for name, errors in fields.items()
        )
        response.data = {
            "error": {
                "code": "invalid",
                "message": message,
                "fields": fields,
                # Each message's own code (`required`, `too_long`...), which "invalid" hides.
                "field_codes": flatten_errors(exc.get_codes()),
            }
        }
    elif isinstance(exc.detail, list):
        message = " ".join(str(error) for error in exc.detail)
        response.data = {"error": {"code": exc.detail[0].code, "message": message}}
    else:
        code = exc.detail.code if hasattr(exc.detail, "code") else exc.default_code
        response.data = {"error": {"code": code, "message": str(exc.detail)}}
    return response


def flatten_errors(detail, prefix: str = "") -> dict[str, list]:
    """Return nested field errors as one list per dotted field name (`events.0`)."""
    if isinstance(detail, dict):
        items = detail.items()
    elif isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        items = enumerate(detail)
    else:
        return {prefix: detail if isinstance(detail, list) else [detail]}
    flat = {}
    for key, value in items:
        flat |= flatten_errors(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


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


RETRY_AFTER_HEADER = OpenApiParameter(
    "Retry-After",
    int,
    location=OpenApiParameter.HEADER,
    description="Seconds to wait before trying again.",
    response=[202, 429],
)


ID_RANGE = {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}
SESSION_ID = OpenApiParameter("session_id", ID_RANGE, OpenApiParameter.PATH)
QUESTION_ID = OpenApiParameter("question_id", ID_RANGE, OpenApiParameter.PATH)


def errors(*codes: int) -> dict:
    """Return the error responses of an operation, each with the one error shape."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERRORS[code]) for code in codes}


ERRORS = {
    400: "Invalid input: `fields` and `field_codes` say what, for each field.",
    401: "No or a wrong token, or not logged in.",
    404: "Not found, or another user's.",
    413: "The audio is larger than MAX_UPLOAD_BYTES (`too_large`).",
    415: "The file is not audio in an accepted format (`unsupported_audio`).",
    429: "Too many requests (`throttled`, `too_many_pending`); Retry-After says when to retry.",
    503: "The database, the audio storage or the scorer is unavailable; nothing was saved.",
}


@extend_schema_view(
    post=extend_schema(
        operation_id="auth_token",
        summary="Exchange a username and password for an API token",
        description="Send the token as `Authorization: Token <token>` on every other call.",
        request=AuthTokenSerializer,
        responses={200: TokenSerializer} | errors(400, 429),
    ),
)
class TokenApi(ObtainAuthToken):
    """Exchange a username and password for the API token; locked out like the login page."""

    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            # django-axes marks the request when the username or the address is locked out.
            if getattr(request, "axes_locked_out", False):
                raise exceptions.Throttled(
                    wait=settings.AXES_COOLOFF_TIME.total_seconds(),
                    detail="Too many failed logins: try again later.",
                )
            raise exceptions.ValidationError(serializer.errors)
        return super().post(request, *args, **kwargs)


class SessionPagination(LimitOffsetPagination):
    default_limit = 20
    max_limit = 100


@extend_schema_view(
    get=extend_schema(
        operation_id="sessions_list",
        summary="List your interview sessions, newest first",
        responses={200: SessionSerializer(many=True)} | errors(401),
    ),
    post=extend_schema(
        operation_id="sessions_create",
        summary="Start an interview",
        request=SessionCreateSerializer,
        responses={201: SessionSerializer} | errors(400, 401, 429),
    ),
)
class SessionListCreateApi(GenericAPIView):
    pagination_class = SessionPagination
    serializer_class = SessionSerializer
    # Creating sessions is throttled per user (reading them is not).
    throttle_classes = [AtomicRateThrottle]
    throttle_scope = "sessions"

    def get(self, request):
        sessions = self.paginate_queryset(InterviewSession.objects.owned_by(request.user))
        return self.get_paginated_response(SessionSerializer(sessions, many=True).data)

    def post(self, request):
        serializer = SessionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = services.session_create(user=request.user, **serializer.validated_data)
        return Response(SessionSerializer(session).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(
        operation_id="sessions_retrieve",
        parameters=[SESSION_ID],
        summary="One interview session and its questions",
        responses={200: SessionSerializer} | errors(401, 404),
    ),
    delete=extend_schema(
        operation_id="sessions_destroy",
        parameters=[SESSION_ID],
        summary="Delete a session: its answers, transcripts, scores and any audio still stored",
        description="Queued transcriptions are dropped (their jobs find nothing), and webhook "
        "deliveries about the session are deleted with it.",
        responses={204: None} | errors(401, 404),
    ),
)
class SessionDetailApi(APIView):
    def get(self, request, session_id):
        return Response(SessionSerializer(get_own_session(request, session_id)).data)

    def delete(self, request, session_id):
        services.session_delete(session=get_own_session(request, session_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    post=extend_schema(
        operation_id="answer_upload",
        summary="Upload a spoken answer; its transcription is queued",
        description="Answers 202 at once; poll `status_url` for the transcript. A new "
        "recording replaces the question's earlier answer.",
        request={"multipart/form-data": AnswerUploadSerializer},
        responses={202: UploadAcceptedSerializer} | errors(400, 401, 404, 413, 415, 429),
        parameters=[SESSION_ID, QUESTION_ID, RETRY_AFTER_HEADER],
    ),
)
class AnswerUploadApi(APIView):
    parser_classes = [MultiPartParser, FormParser]
    # Per user, counted atomically in the shared cache: exact across threads and processes.
    throttle_classes = [AtomicRateThrottle]
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
        # The pending cap is checked by answer_submit before storing anything, and again,
        # exactly, under a lock when the answer is recorded.
        try:
            serializer = AnswerUploadSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            answer = services.answer_submit(
                session=session,
                question=question,
                audio=serializer.validated_data["audio"],
                content_type=serializer.validated_data["content_type"],
                audio_seconds=serializer.validated_data["audio_seconds"],
            )
        except services.TooManyPending:
            raise TooManyPendingUploads() from None
        except InterviewSession.DoesNotExist:
            # Deleted while the audio was being stored; the audio is discarded.
            raise exceptions.NotFound(
                "Interview session not found.", code="session_not_found"
            ) from None
        status_url = reverse("answer-status", args=[session.pk, question.pk])
        return Response(
            {
                "status": "processing",
                "message": "Audio uploaded successfully, transcription in progress",
                "file_id": answer.transcription.gridfs_file_id,
                "transcription_status": answer.transcription.status,
                "status_url": request.build_absolute_uri(status_url),
            },
            status=status.HTTP_202_ACCEPTED,
        )


class TooManyPendingUploads(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_pending"

    def __init__(self):
        super().__init__(
            f"You already have {settings.MAX_PENDING_PER_USER} answers waiting for "
            "transcription; upload this one once one of them has finished."
        )


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise exceptions.ParseError("Content-Length is not a number.") from None


@extend_schema_view(
    get=extend_schema(
        operation_id="answer_status",
        parameters=[SESSION_ID, QUESTION_ID],
        summary="The transcription status of one answer",
        responses={200: AnswerStatusSerializer} | errors(401, 404),
    ),
)
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


@extend_schema_view(
    get=extend_schema(
        operation_id="session_status",
        parameters=[SESSION_ID],
        summary="The transcription status of every question of a session",
        responses={200: SessionStatusSerializer} | errors(401, 404),
    ),
)
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


@extend_schema_view(
    post=extend_schema(
        operation_id="session_analyze",
        summary="Score the session, or say which transcriptions it waits for",
        description="202 while any answer is still queued or processing (try again after "
        "Retry-After seconds); 200 with the scores once none is.",
        request=None,
        responses={
            200: AnalysisSerializer,
            202: OpenApiResponse(AnalysisPendingSerializer, description="Still transcribing."),
        }
        | errors(400, 401, 404, 503),
        parameters=[SESSION_ID, RETRY_AFTER_HEADER],
    ),
)
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
            retry_after = services.retry_after_estimate(answers=analysis.answers)
            return Response(
                {
                    "status": "transcription_pending",
                    "message": f"Waiting for {analysis.pending_count} transcriptions to complete",
                    "pending_count": analysis.pending_count,
                    "processing_count": analysis.processing_count,
                    "retry_after": retry_after,
                },
                status=status.HTTP_202_ACCEPTED,
                headers={"Retry-After": str(retry_after)},
            )
        return Response(analysis_data(analysis))


class AcceptHeaderNegotiation(DefaultContentNegotiation):
    """The stream's format comes from the Accept header only (no ?format= override)."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


# One item of the stream as an SSE parser sees it (data: JSON text, see README: Live events).
EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {
            "type": "string",
            "enum": ["queued", "processing", "completed", "failed", "analysis"],
        },
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
    "required": ["id", "event", "data"],
}


class EventStreamRenderer(BaseRenderer):
    """Lets a client that accepts only text/event-stream (EventSource) reach the view; an
    error before the stream starts is still the API's JSON error body."""

    media_type = "text/event-stream"
    format = "event-stream"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return JSONRenderer().render(data)


@extend_schema_view(
    get=extend_schema(
        operation_id="session_events",
        summary="Live events of a session (Server-Sent Events)",
        description=(
            "A `text/event-stream` that stays open: one event per answer status change "
            "(`queued`, `processing`, `completed` with the transcript, `failed` with the "
            "reason), each `data` shaped like one entry of the session's status, then "
            "`analysis` with the body of a successful analyze once nothing is pending. Each "
            "event has an `id`; reconnect with `Last-Event-ID` (or `?last_event_id=`) to get "
            "exactly the events after it. A `: keep-alive` comment line every 15 s. The "
            "stream ends when the session is deleted or the credentials are revoked, and "
            "after EVENTS_MAX_SECONDS (the client reconnects). See README: Live events."
        ),
        parameters=[
            SESSION_ID,
            OpenApiParameter("format", exclude=True),  # chosen by Accept only
            OpenApiParameter(
                "Last-Event-ID",
                str,
                OpenApiParameter.HEADER,
                description="The id of the last event received: only later ones are sent.",
            ),
            OpenApiParameter(
                "last_event_id",
                str,
                OpenApiParameter.QUERY,
                description="The same as the Last-Event-ID header, for clients without headers.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                EVENT_SCHEMA, description="The event stream: one item per event."
            ),
        }
        | {
            (code, "application/json"): OpenApiResponse(ErrorSerializer, description=ERRORS[code])
            for code in (400, 401, 404)
        },
    ),
)
class SessionEventsApi(APIView):
    """Server-Sent Events: each answer's status change, then the analysis (README: Live events)."""

    renderer_classes = [JSONRenderer, EventStreamRenderer]
    content_negotiation_class = AcceptHeaderNegotiation

    def handle_exception(self, exc):
        # An error before the stream starts is the API's JSON error, whatever was accepted.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)

    def get(self, request, session_id):
        session = get_own_session(request, session_id)
        after = _last_event_id(request)
        token = request.auth
        access = streams.StreamAccess(
            session_id=session.pk,
            user_id=request.user.pk,
            token_key=getattr(token, "key", None),
            login_session_key=None if token else request.session.session_key,
        )
        if isinstance(request._request, ASGIRequest):
            body = streams.async_stream(access, after=after)
        else:
            body = streams.sync_stream(access, after=after)
        response = StreamingHttpResponse(body, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx-style proxies: pass each event at once
        return response


def _last_event_id(request) -> int:
    """The id of the last event the client has: the EventSource header, or ?last_event_id=."""
    value = request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id")
    if not value:
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise exceptions.ValidationError(
            {"last_event_id": ["Must be the id of an event this stream sent."]}
        )
    return int(value)


@extend_schema_view(
    get=extend_schema(
        operation_id="health",
        summary="Whether the database, MongoDB and the queue workers are reachable",
        responses={
            200: HealthSerializer,
            503: OpenApiResponse(HealthSerializer, description="A dependency is down."),
        },
    ),
)
class HealthApi(APIView):
    """Report whether the database, MongoDB and the queue workers are reachable; no private data."""

    # Anyone may ask; a staff member logged in to the site also sees the counts.
    authentication_classes = [SessionAuthentication]
    permission_classes = []

    def get(self, request):
        report = health_check()
        healthy = report["database"] == "ok" and report["mongodb"] == "ok"
        body = report if _may_see_counts(request) else public_view(report)
        return Response(body, status=200 if healthy else 503)


def _may_see_counts(request) -> bool:
    """Staff logged in to the site, or a monitor presenting HEALTH_MONITORING_TOKEN."""
    if request.user.is_staff:
        return True
    token = settings.HEALTH_MONITORING_TOKEN
    presented = request.META.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ")
    return bool(token) and hmac.compare_digest(presented.encode(), token.encode())
