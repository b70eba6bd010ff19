from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import api

ID = r"(?P<{}>[0-9]{{1,18}})"  # bounded, so a huge number is a 404 and not a database error
SESSION, QUESTION = ID.format("session_id"), ID.format("question_id")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("auth/token/", api.TokenApi.as_view(), name="api-token"),
    re_path(r"^health/?$", api.HealthApi.as_view(), name="health"),
    re_path(r"^sessions/?$", api.SessionListCreateApi.as_view(), name="sessions"),
    re_path(rf"^sessions/{SESSION}/?$", api.SessionDetailApi.as_view(), name="session-detail"),
    re_path(
        rf"^sessions/{SESSION}/events/?$", api.SessionEventsApi.as_view(), name="session-events"
    ),
    re_path(
        rf"^upload-answer/{SESSION}/{QUESTION}/?$",
        api.AnswerUploadApi.as_view(),
        name="upload-answer",
    ),
    re_path(
        rf"^transcription-status/{SESSION}/{QUESTION}/?$",
        api.AnswerStatusApi.as_view(),
        name="answer-status",
    ),
    re_path(
        rf"^transcription-status/{SESSION}/?$",
        api.SessionStatusApi.as_view(),
        name="session-status",
    ),
    re_path(rf"^analyze/{SESSION}/?$", api.SessionAnalyzeApi.as_view(), name="analyze"),
]
