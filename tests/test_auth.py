"""Who may call the API: token authentication, and sessions visible only to their owner."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sessions_app.services import session_create
from tests.support import stored_state

pytestmark = pytest.mark.django_db

# The four endpoints of the design, with the status their owner gets for the same request.
SESSION_ENDPOINTS = [
    pytest.param("post", "/api/upload-answer/{session}/{question}", 202, id="upload-answer"),
    pytest.param("get", "/api/transcription-status/{session}/{question}", 200, id="answer-status"),
    pytest.param("get", "/api/transcription-status/{session}", 200, id="session-status"),
    pytest.param("post", "/api/analyze/{session}", 202, id="analyze"),
]


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def call(client, method: str, url: str, audio: bytes):
    """Send the request; every POST carries an audio file, as an upload would."""
    if method == "post":
        recording = SimpleUploadedFile("answer.wav", audio, content_type="audio/wav")
        return client.post(url, {"audio": recording}, format="multipart")
    return client.get(url)


@pytest.fixture
def answered_interview(interview, upload, gridfs, spoken):
    """The candidate's interview with its first question answered."""
    upload(interview.pk, interview.ordered_questions()[0].pk, spoken("my own answer"))
    return interview


@pytest.fixture
def others_interview(other_user, questions, gridfs, spoken, django_capture_on_commit_callbacks):
    """Another user's interview with its first question answered."""
    session = session_create(user=other_user, question_count=3)
    question = session.ordered_questions()[0]
    with django_capture_on_commit_callbacks(execute=True):
        response = call(
            client_for(other_user),
            "post",
            f"/api/upload-answer/{session.pk}/{question.pk}",
            spoken("someone else's answer"),
        )
    assert response.status_code == 202
    return session


@pytest.mark.parametrize(("method", "url", "owner_status"), SESSION_ENDPOINTS)
def test_session_endpoints_refuse_requests_without_credentials(
    method, url, owner_status, user, answered_interview, gridfs, spoken
):
    url = url.format(
        session=answered_interview.pk, question=answered_interview.ordered_questions()[0].pk
    )
    before = stored_state(gridfs)

    response = call(APIClient(), method, url, spoken("an anonymous answer"))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"
    assert stored_state(gridfs) == before
    assert call(client_for(user), method, url, spoken("an answer")).status_code == owner_status


@pytest.mark.parametrize(("method", "url", "owner_status"), SESSION_ENDPOINTS)
def test_session_endpoints_answer_404_for_another_users_session_and_change_nothing(
    method, url, owner_status, api_client, other_user, others_interview, gridfs, spoken
):
    url = url.format(
        session=others_interview.pk, question=others_interview.ordered_questions()[0].pk
    )
    before = stored_state(gridfs)

    response = call(api_client, method, url, spoken("an answer to a stranger's question"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"
    assert stored_state(gridfs) == before
    assert call(client_for(other_user), method, url, spoken("an answer")).status_code == (
        owner_status
    )


def test_token_endpoint_returns_a_token_that_authenticates_requests(user, interview):
    user.set_password("correct horse battery staple")
    user.save()

    response = APIClient().post(
        "/api/auth/token/",
        {"username": "candidate", "password": "correct horse battery staple"},
        format="json",
    )

    assert response.status_code == 200
    assert list(response.json()) == ["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    sessions = client.get("/api/sessions/")
    assert sessions.status_code == 200
    assert [session["id"] for session in sessions.json()["results"]] == [interview.pk]


def test_token_endpoint_refuses_a_wrong_password_without_a_token(user):
    user.set_password("correct horse battery staple")
    user.save()

    response = APIClient().post(
        "/api/auth/token/", {"username": "candidate", "password": "wrong"}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert "token" not in body
    assert body["error"]["code"] == "invalid"
    assert body["error"]["message"]
    assert not Token.objects.filter(user=user).exists()


def test_a_made_up_token_is_refused(interview):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    response = client.get("/api/sessions/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("url", ["/api/sessions/", "/api/sessions/{session}/"])
def test_session_list_and_detail_refuse_requests_without_credentials(url, interview):
    response = APIClient().get(url.format(session=interview.pk))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_session_list_shows_only_the_callers_sessions(api_client, interview, other_user):
    session_create(user=other_user, question_count=2)
    newer = session_create(user=interview.user, question_count=2)

    response = api_client.get("/api/sessions/")

    assert response.status_code == 200
    assert [session["id"] for session in response.json()["results"]] == [newer.pk, interview.pk]


def test_session_detail_shows_own_session_and_404_for_another_users(
    api_client, interview, other_user
):
    others = session_create(user=other_user, question_count=2)

    own = api_client.get(f"/api/sessions/{interview.pk}/")
    foreign = api_client.get(f"/api/sessions/{others.pk}/")

    assert own.status_code == 200
    assert own.json()["id"] == interview.pk
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "session_not_found"


@pytest.mark.parametrize(
    "url",
    [
        "/api/transcription-status/abc",
        "/api/upload-answer/1/first",
        "/api/sessions/-1/",
        "/api/analyze/1234567890123456789012",
    ],
)
def test_malformed_ids_answer_404_in_the_api_error_shape(api_client, url):
    response = api_client.get(url)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert error["message"]
