"""Production settings pass `check --deploy`; CORS follows the allow-list; CSRF guards sessions."""

import os
import secrets
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sessions_app.models import InterviewSession
from tests.support import ROOT


def production_env(**overrides: str) -> dict[str, str]:
    """Return the environment of a production process: DEBUG off, no development overrides."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "CORS_", "REDIS_URL"))
    }
    env["DJANGO_DEBUG"] = "0"
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    env["DJANGO_ALLOWED_HOSTS"] = "interview.example.com"
    return env | overrides


def manage_py(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- Production settings --------------------------------------------------


def test_check_deploy_with_production_settings_reports_no_issues():
    result = manage_py("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = production_env()
    del env["DJANGO_SECRET_KEY"]
    result = manage_py("check", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("Q_WORKERS", "many"),
        ("DJANGO_SECURE_HSTS_SECONDS", "a-year"),
        ("DJANGO_SECURE_SSL_REDIRECT", "sometimes"),
        ("DJANGO_DEBUG", "maybe"),
    ],
)
def test_a_bad_typed_setting_stops_startup_naming_the_variable(variable, value):
    result = manage_py("check", env=production_env(**{variable: value}))
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {variable} must be" in result.stderr
    assert repr(value) in result.stderr


# --- CORS -----------------------------------------------------------------

ALLOWED_ORIGIN = "https://practice.example.com"


@pytest.fixture
def cors_allow_list(settings):
    # django-cors-headers reads its settings on every request, so this takes effect at once.
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED_ORIGIN]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [(ALLOWED_ORIGIN, True), ("https://elsewhere.example.com", False)],
)
def test_only_listed_origins_may_call_the_api_from_a_browser(
    cors_allow_list, api_client, origin, allowed
):
    preflight = APIClient().options(
        "/api/sessions/",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    listing = api_client.get("/api/sessions/", HTTP_ORIGIN=origin)

    assert listing.status_code == 200
    if allowed:
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == origin
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
        assert listing.headers["Access-Control-Allow-Origin"] == origin
    else:
        assert "Access-Control-Allow-Origin" not in preflight.headers
        assert "Access-Control-Allow-Origin" not in listing.headers
    # Cross-origin callers use a token: browsers never send this site's cookies along.
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    assert "Access-Control-Allow-Credentials" not in listing.headers


# --- CSRF -----------------------------------------------------------------

PASSWORD = "correct horse battery staple"


@pytest.fixture
def browser_user(questions):
    return get_user_model().objects.create_user("browser-user", password=PASSWORD)


@pytest.fixture
def browser(browser_user):
    """A client logged in with a session cookie, checked for CSRF as a browser would be."""
    client = APIClient(enforce_csrf_checks=True)
    # django-axes checks every authentication against its request's address.
    assert client.login(request=HttpRequest(), username="browser-user", password=PASSWORD)
    # Any page with a form sets the CSRF cookie; the admin login page is one. A forged
    # cross-site request carries this cookie too, but cannot read it to send the token.
    client.get("/admin/login/")
    assert "csrftoken" in client.cookies
    return client


@pytest.mark.parametrize(
    ("headers", "reason"),
    [({}, "CSRF token missing"), ({"HTTP_X_CSRFTOKEN": "x" * 32}, "incorrect")],
    ids=["no-token", "wrong-token"],
)
def test_session_authenticated_write_without_the_csrf_token_is_refused(browser, headers, reason):
    response = browser.post("/api/sessions/", {"question_count": 2}, format="json", **headers)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert reason in response.json()["error"]["message"]
    assert not InterviewSession.objects.exists()


def test_session_authenticated_write_with_the_csrf_token_succeeds(browser, browser_user):
    csrf_token = browser.cookies["csrftoken"].value

    response = browser.post(
        "/api/sessions/", {"question_count": 2}, format="json", HTTP_X_CSRFTOKEN=csrf_token
    )

    assert response.status_code == 201
    assert InterviewSession.objects.get().user == browser_user


def test_token_authenticated_write_needs_no_csrf_token(browser_user):
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=browser_user).key}")

    response = client.post("/api/sessions/", {"question_count": 2}, format="json")

    assert response.status_code == 201
    assert InterviewSession.objects.get().user == browser_user


@pytest.mark.django_db
def test_https_redirect_spares_only_the_health_check(settings, mongo_uri):
    settings.SECURE_SSL_REDIRECT = True
    client = APIClient()

    health = client.get("/api/health")
    sessions = client.get("/api/sessions/")

    assert health.status_code == 200  # a platform probe over plain HTTP reaches the check
    assert sessions.status_code == 301
    assert sessions["Location"].startswith("https://")
